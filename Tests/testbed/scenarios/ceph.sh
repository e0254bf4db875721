# Ceph RBD backend against a one-mon, one-osd cluster (memstore, cephx, pool size 1) started
# here on 127.0.0.1: add rbd:pool/image, fio verify, ext4 mkfs/mount/fsck, `rbd export` equals
# the writes, a snapshot exported read-only, a namespace, resize, a live mirror of a file-backed
# disk to an RBD image under fio (`rbd export` equals the disk), and refusals (missing pool,
# missing image, unreachable cluster, a user whose caps exclude the pool, a user the cluster does
# not know) before any device exists.
# timeout: 900
source "$PROJECT/Tests/testbed/scenario-lib.sh"
source "$PROJECT/Tests/testbed/ceph-lib.sh"
X=$VDUSE_EXPORT
for c in ceph-mon ceph-osd rbd fio; do command -v $c >/dev/null || fail "$c missing: scripts/install-deps testbed"; done
[ -x "$CEPH_MC" ] || fail "$CEPH_MC missing: swift build builds it"
T0=$SECONDS
took() { echo "$((SECONDS - T0)) s"; }
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        ceph_logs
        for f in /run/vduse-export/*.log; do [ -f "$f" ] && { echo "---- $f"; tail -20 "$f"; }; done
    fi
    ceph_down
}
trap cleanup EXIT
loopback_up
ceph_up "$PWD/ceph" || fail "the Ceph cluster did not come up"
timeout 120 rbd create --size 64M rbd/img || fail "rbd create"
note "cluster up, image rbd/img created ($(took))"

# 1. add rbd:pool/image: fio verify; ext4; bytes written are what `rbd export` reads.
dev=$(timeout 150 $X add "rbd:rbd/img:conf=$CEPH_CONF") || fail "add rbd:rbd/img"
[ "$(blockdev --getsize64 "$dev")" = $((64 << 20)) ] || fail "size of $dev"
$X list | grep -E "^img .* running .*rbd:rbd/img:conf=$CEPH_CONF" >/dev/null || fail "list: $($X list)"
[ "$(cat /sys/block/"$(basename "$dev")"/queue/discard_max_bytes)" != 0 ] || fail "no discard"
timeout 400 fio --name=v --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 \
    --size=8M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=fio.log || { cat fio.log; fail "fio verify"; }
grep -q "err= 0" fio.log || { cat fio.log; fail "fio errors"; }
note "fio verify on $dev ($(took))"
mkfs.ext4 -q -E nodiscard "$dev" 40M || fail "mkfs.ext4"
mkdir -p mnt && mount "$dev" mnt || fail "mount"
head -c 4M /dev/urandom >mnt/data && sync && cp mnt/data data.copy
umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck"; }
mount -o ro "$dev" mnt && cmp mnt/data data.copy || fail "file changed across mount"
umount mnt
head -c 8M /dev/urandom >pattern.bin
dd if=pattern.bin of="$dev" bs=1M seek=48 oflag=direct conv=fsync status=none || fail "dd"
blkdiscard -z -o $((60 << 20)) -l $((1 << 20)) "$dev" || fail "write-zeroes"
$X del img || fail "del img"
expect_gone img
timeout 120 rbd export rbd/img img.raw >/dev/null 2>&1 || fail "rbd export"
cmp -n $((8 << 20)) -i $((48 << 20)):0 img.raw pattern.bin || fail "rbd export differs from what was written"
cmp -n $((1 << 20)) -i $((60 << 20)):0 img.raw /dev/zero || fail "write-zeroes not in the image"
note "ext4 mkfs/mount/fsck clean; rbd export holds the writes and the zeroes ($(took))"

# 2. A snapshot, exported read-only; the image itself changes afterwards, the snapshot does not.
timeout 120 rbd snap create rbd/img@s1 >/dev/null 2>&1 || fail "rbd snap create"
dev=$(timeout 150 $X add "rbd:rbd/img@s1:conf=$CEPH_CONF") || fail "add the snapshot"
[ "$(cat /sys/block/"$(basename "$dev")"/ro)" = 1 ] || fail "snapshot not read-only"
dd if="$dev" of=snap.bin bs=1M skip=48 count=8 iflag=direct status=none && cmp snap.bin pattern.bin || fail "snapshot content"
rc=0; dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none 2>/dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "a write to the snapshot succeeded"
$X del img-s1 || fail "del img-s1"
rc=0; $X serve --blockdev driver=rbd,node-name=r0,pool=rbd,image=img,snapshot=s1,conf="$CEPH_CONF" \
    --export type=vduse-blk,id=e0,node-name=r0,name=snapw,writable=on 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -q "rbd snapshots are always read-only" err.txt || fail "writable snapshot: exit $rc $(cat err.txt)"
note "snapshot exported read-only, content as at the snapshot ($(took))"

# 3. Namespace, then resize through the resize verb (block_resize over QMP).
timeout 60 rbd namespace create rbd/ns1 || fail "rbd namespace create"
timeout 60 rbd create --size 16M rbd/ns1/small || fail "rbd create in ns1"
dev=$(timeout 150 $X add "rbd:rbd/ns1/small:conf=$CEPH_CONF") || fail "add rbd:rbd/ns1/small"
dd if=pattern.bin of="$dev" bs=1M count=8 oflag=direct conv=fsync status=none || fail "dd ns1"
$X resize small 32M || fail "resize"
[ "$(blockdev --getsize64 "$dev")" = $((32 << 20)) ] || fail "device size after resize: $(blockdev --getsize64 "$dev")"
timeout 60 rbd info rbd/ns1/small | grep -q "size 32 MiB" || fail "rbd info after resize: $(rbd info rbd/ns1/small)"
$X del small || fail "del small"
timeout 120 rbd export rbd/ns1/small small.raw >/dev/null 2>&1 || fail "rbd export ns1"
cmp -n $((8 << 20)) small.raw pattern.bin || fail "ns1 export differs"
note "namespace ns1: written and exported; resized to 32M (device and rbd info) ($(took))"

# 4. mirror: a file-backed disk moves to an RBD image while fio (crc32c verify) writes it; the
# record names the image, the file is deleted, `rbd export` equals the disk.
truncate -s 16M moved.raw
timeout 60 rbd create --size 16M rbd/moved || fail "rbd create rbd/moved"
dev=$($X add "$PWD/moved.raw" --name moved --num-queues 2) || fail "add moved.raw"
fio --name=m --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --numjobs=2 \
    --offset_increment=8M --size=4M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=fio-mirror.log &
fio_pid=$!
timeout 300 $X mirror moved "rbd:rbd/moved:conf=$CEPH_CONF" >mirror.out 2>&1 || { cat mirror.out; fail "mirror to rbd:rbd/moved"; }
wait "$fio_pid" || { cat fio-mirror.log; fail "fio verify during the mirror"; }
grep -q "err= 0" fio-mirror.log || { cat fio-mirror.log; fail "fio errors during the mirror"; }
$X list | grep -E "^moved .* running .*rbd:rbd/moved:conf=$CEPH_CONF\$" >/dev/null || fail "list after the mirror: $($X list)"
[ ! -e moved.raw ] || fail "the source file was not deleted"
dd if="$dev" of=moved.dev bs=1M iflag=direct status=none || fail "read $dev"
$X del moved || fail "del moved"
timeout 120 rbd export rbd/moved moved.rbd >/dev/null 2>&1 || fail "rbd export rbd/moved"
cmp moved.dev moved.rbd || fail "rbd export differs from the disk after the mirror"
note "mirror moved.raw -> rbd:rbd/moved under fio (2 jobs, verify clean): list names the image, the file deleted, rbd export = the disk ($(took))"

# 5. Refusals before any device exists: exit 4, nothing left.
rc=0; $X add "rbd:nosuch/img:conf=$CEPH_CONF" --name bad 2>err.txt || rc=$?
[ "$rc" -eq 4 ] && grep -q "error opening pool nosuch" err.txt || fail "missing pool: exit $rc $(cat err.txt)"
note "missing pool: $(cat err.txt)"
rc=0; $X add "rbd:rbd/nosuch:conf=$CEPH_CONF" --name bad 2>err.txt || rc=$?
[ "$rc" -eq 4 ] && grep -q "error reading header from nosuch" err.txt || fail "missing image: exit $rc $(cat err.txt)"
note "missing image: $(cat err.txt)"
sed 's/^mon host = .*/mon host = 127.0.0.1:1/' "$CEPH_CONF" >bad.conf
s=$SECONDS
rc=0; $X add "rbd:rbd/img:conf=$PWD/bad.conf" --name bad 2>err.txt || rc=$?
[ "$rc" -eq 4 ] && grep -q "error connecting" err.txt || fail "unreachable cluster: exit $rc $(cat err.txt)"
note "unreachable cluster, after $((SECONDS - s)) s: $(cat err.txt)"
# Permission: caps that exclude the pool (the OSD says EPERM), a key the cluster does not know
# (the monitor says EACCES). The user is named; nothing is left behind.
rc=0; $X add "rbd:rbd/img:id=other:conf=$CEPH_CONF" --name bad 2>err.txt || rc=$?
[ "$rc" -eq 4 ] && grep -q "permission denied for client.other (its caps do not allow image rbd/img)" err.txt \
    || fail "caps without the pool: exit $rc $(cat err.txt)"
note "caps without the pool: $(cat err.txt)"
rc=0; $X add "rbd:rbd/img:id=ghost:conf=$CEPH_CONF" --name bad 2>err.txt || rc=$?
[ "$rc" -eq 4 ] && grep -q "error connecting: permission denied for client.ghost" err.txt \
    || fail "unknown user: exit $rc $(cat err.txt)"
note "unknown user: $(cat err.txt)"
expect_gone bad
! ls /run/vduse-export 2>/dev/null | grep -q '^bad\.' || fail "left in /run/vduse-export: $(ls /run/vduse-export)"
rc=0; $X add "rbd:rbd" --name bad 2>err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "malformed rbd name: exit $rc"
[ -z "$($X list)" ] || fail "left in list: $($X list)"
expect_no_disks
note "missing pool, missing image, unreachable cluster, permission denied (caps, unknown user), malformed name: refused, nothing left ($(took))"
