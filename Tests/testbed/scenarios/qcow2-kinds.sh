# qcow2 images of every kind the issue lists, made by qemu-img and exported with `add` (format
# probed): each reads back through /dev/vdX equal to `qemu-img convert -O raw`. Then writes through
# a file system (ext4 mkfs, file copy, fsck) and write-zeroes, `resize` of a qcow2 export, and bad
# images refused by `add` with a clear error, no device and nothing left behind.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
command -v qemu-img >/dev/null || fail "qemu-img missing: scripts/install-deps testbed"

# 1. Reads: data at cluster-straddling offsets, a zero cluster and a hole in each image.
head -c 3M /dev/urandom >pat
kinds=("cluster_size=512" "cluster_size=2M" "refcount_bits=1" "refcount_bits=64"
       "preallocation=metadata" "compat=0.10" "lazy_refcounts=on" "compressed-zlib")
for i in "${!kinds[@]}"; do
    k=${kinds[$i]}
    img=kind$i.qcow2
    opt=$k; [ "$k" = compressed-zlib ] && opt=cluster_size=64k
    qemu-img create -q -f qcow2 -o "$opt" src.qcow2 24M
    qemu-io -f qcow2 -c "write -P 0x11 0 1000k" -c "write -z 5M 2M" -c "write -P 0x22 9M 64k" src.qcow2 >/dev/null
    qemu-io -f qcow2 -c "write -s pat 13M 3M" src.qcow2 >/dev/null 2>&1 \
        || qemu-io -f qcow2 -c "write -P 0x33 13M 3M" src.qcow2 >/dev/null
    if [ "$k" = compressed-zlib ]; then
        qemu-img convert -c -O qcow2 -o compression_type=zlib src.qcow2 "$img"
        qemu-img info "$img" | grep -q "compression type: zlib" || fail "$k: not zlib"
    else
        mv src.qcow2 "$img"
    fi
    qemu-img convert -O raw "$img" expected.raw
    dev=$($X add "$img" --name k$i --read-only) || fail "$k: add failed"
    cmp "$dev" expected.raw || fail "$k: /dev/vdX differs from qemu-img convert -O raw"
    $X del k$i
done
note "read back equal to qemu-img convert: ${kinds[*]}"

# 2. Writes through a file system and write-zeroes; then qemu-img check and compare.
qemu-img create -q -f qcow2 fs.qcow2 96M
dev=$($X add fs.qcow2 --name fs0 --num-queues 2)
head -c 8M /dev/urandom | dd of="$dev" bs=1M seek=80 oflag=direct status=none
blkdiscard -f -z -o 80M -l 8M "$dev"
cmp -n $((8 << 20)) <(dd if="$dev" bs=1M skip=80 count=8 iflag=direct status=none) /dev/zero \
    || fail "write-zeroes range does not read back as zeros"
mkfs.ext4 -q -F "$dev"
mkdir -p mnt; mount "$dev" mnt
cp -r "$PROJECT/Sources" mnt/src; head -c 8M /dev/urandom >mnt/blob; sync
sum=$(cd mnt && find . -type f -exec sha256sum {} + | sort | sha256sum)
umount mnt
fsck.ext4 -f -n "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after writes"; }
mount "$dev" mnt
[ "$(cd mnt && find . -type f -exec sha256sum {} + | sort | sha256sum)" = "$sum" ] || fail "files changed after remount"
umount mnt
dd if="$dev" of=fs.raw bs=1M iflag=direct status=none
$X del fs0
qemu-img check fs.qcow2 >check.log 2>&1 || { cat check.log; fail "qemu-img check after ext4 writes"; }
grep -q "leaked" check.log && { cat check.log; fail "leaked clusters after a clean stop"; }
qemu-img compare -q -f qcow2 -F raw fs.qcow2 fs.raw || fail "image differs from what the device showed"
note "write-zeroes over data, ext4 mkfs + copy + fsck: qemu-img check clean, compare equal"

# 3. resize of a qcow2 export: the kernel's capacity and the image's virtual size follow.
dev=$($X add fs.qcow2 --name fs1)
$X resize fs1 128M >/dev/null || fail "resize of a qcow2 export failed"
[ "$(cat /sys/block/$(basename "$dev")/size)" = $((128 * 2048)) ] || fail "kernel capacity did not follow the resize"
$X del fs1
qemu-img info fs.qcow2 | grep -q "virtual size: 128 MiB" || { qemu-img info fs.qcow2; fail "virtual size after resize"; }
qemu-img check -q fs.qcow2 || fail "qemu-img check after resize"
note "resize 96M -> 128M on qcow2: kernel and qemu-img agree"

# 4. Bad images: each refused with a message, exit non-zero, no device, no record.
refuse() {  # refuse LABEL ARGS...
    local label=$1; shift
    local rc=0
    $X add "$@" --name bad >bad.out 2>bad.err || rc=$?
    [ "$rc" -ne 0 ] || fail "$label: add succeeded"
    [ -s bad.err ] || fail "$label: no message"
    [ ! -e /dev/vduse/bad ] && [ ! -e /run/vduse-export/bad.json ] || fail "$label: left something behind"
    note "$label: exit $rc: $(head -1 bad.err | cut -c1-110)"
}
qemu-img create -q -f qcow2 good.qcow2 16M
head -c 40 good.qcow2 >trunc.qcow2
refuse "truncated header" trunc.qcow2 --format qcow2
truncate -s 16M notq.img
refuse "wrong magic with --format qcow2" notq.img --format qcow2
qemu-img create -q -f qcow2 -u -b "$PWD/gone.raw" -F raw orphan.qcow2 16M
refuse "missing backing file" orphan.qcow2
qemu-img create -q -f qcow2 loopb.qcow2 16M
qemu-img create -q -f qcow2 -b loopb.qcow2 -F qcow2 loopa.qcow2
qemu-img rebase -u -f qcow2 -b loopa.qcow2 -F qcow2 loopb.qcow2
refuse "backing chain loop" loopa.qcow2
cp good.qcow2 badl1.qcow2
printf '\x00\x00\x00\x7f\x00\x00\x00\x00' | dd of=badl1.qcow2 bs=1 seek=40 conv=notrunc status=none
refuse "L1 table past the end of the file" badl1.qcow2
expect_no_disks
