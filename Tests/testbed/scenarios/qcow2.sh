# qcow2 through /dev/vdX: images made by qemu-img read back equal to `qemu-img convert -O raw`;
# fio verify over an overlay (partial-cluster copy-on-write from a raw base) with 2 queues;
# discard; then `qemu-img check` is clean and the image holds what the device showed.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img missing: scripts/install-deps testbed"

qcow2_export() {  # qcow2_export LOG NAME IMAGE [qcow2 options] [export options]
    start_export "$1" --blockdev "driver=file,node-name=f0,filename=$3" \
        --blockdev "driver=qcow2,node-name=q0,file=f0${4:-}" --object iothread,id=io0 \
        --export "type=vduse-blk,id=e0,node-name=q0,name=$2,iothread=io0${5:-}"
}

# Read: raw base <- qcow2 (4k clusters, own data and zero clusters) <- qcow2; then a zstd-compressed copy.
head -c 24M /dev/urandom >base.raw
truncate -s 32M base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw -o cluster_size=4k mid.qcow2
qemu-io -f qcow2 -c "write -P 0x5a 1M 3M" -c "write -z 8M 1M" mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 40M
qemu-io -f qcow2 -c "write -P 0x6b 2M 100k" -c "write -P 0x6c 33M 1M" top.qcow2 >/dev/null
qemu-img convert -c -O qcow2 -o compression_type=zstd top.qcow2 packed.qcow2
for img in top packed; do
    qemu-img convert -O raw $img.qcow2 expected.raw
    qcow2_export rd$img qrd$img "$PWD/$img.qcow2"
    [ "$(blockdev --getsize64 "$DEV")" = $((40 << 20)) ] || fail "$img: device size is not the virtual size"
    cmp "$DEV" expected.raw || fail "$img: /dev/vdX differs from qemu-img convert -O raw"
    stop_export qrd$img
done
note "chain of 3 (raw, qcow2 4k, qcow2 64k) and its zstd-compressed copy read back equal"

# Write: fio verify on an overlay over the raw base (lazy refcounts), 2 queues, 64k clusters
# written in 4k pieces.
qemu-img create -q -f qcow2 -b base.raw -F raw -o lazy_refcounts=on w.qcow2
before=$(sha256sum <base.raw)
qcow2_export wr qwr "$PWD/w.qcow2" ",discard=unmap" ",writable=on,num-queues=2"
fio --name=rand4k --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 \
    --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=rand.log \
    || { cat rand.log; fail "4k randwrite verify failed"; }
fio --name=seq --filename="$DEV" --ioengine=io_uring --direct=1 --rw=write --bs=1M --iodepth=4 \
    --offset=16M --size=12M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=seq.log \
    || { cat seq.log; fail "1M sequential verify failed"; }
grep -q "err= 0" rand.log && grep -q "err= 0" seq.log || fail "fio reported errors"
blkdiscard -o 28M -l 2M "$DEV"
cmp -n $((2 << 20)) <(dd if="$DEV" bs=1M skip=28 count=2 iflag=direct status=none) /dev/zero \
    || fail "discarded range does not read back as zeros"
dd if="$DEV" of=device.raw bs=1M iflag=direct status=none
stop_export qwr
[ "$(od -An -tx1 -j79 -N1 w.qcow2 | tr -d ' ')" = 00 ] || fail "the dirty bit (lazy refcounts) is still set after a clean stop"
qemu-img check w.qcow2 >check.log 2>&1 || { cat check.log; fail "qemu-img check failed"; }
grep -q "leaked" check.log && { cat check.log; fail "qemu-img check found leaks"; }
qemu-img compare -q -f qcow2 -F raw w.qcow2 device.raw || fail "image differs from what the device showed"
[ "$(sha256sum <base.raw)" = "$before" ] || fail "the backing file changed"
note "fio verify, discard; qemu-img check clean, image equals the device, base unchanged"

# add probes the format and reports the virtual size.
qemu-img create -q -f qcow2 probe.qcow2 1G
out=$("$VDUSE_EXPORT" add probe.qcow2 --json)
echo "$out" | grep -q '"size" : 1073741824' || fail "add --json does not show the virtual size: $out"
"$VDUSE_EXPORT" del probe
note "add probed qcow2: $(echo "$out" | grep -o '"device" : "[^"]*"')"

# SIGKILL during writes: the supervisor's new server reopens the image and takes the device over;
# afterwards qemu-img check finds no corruption (leaks allowed).
qemu-img create -q -f qcow2 -o cluster_size=4k k.qcow2 64M
out=$("$VDUSE_EXPORT" add k.qcow2 --json)
dev=$(echo "$out" | grep -o '"device" : "[^"]*"' | cut -d'"' -f4)
pid=$(echo "$out" | grep -o '"pid" : [0-9]*' | grep -o '[0-9]*$')
fio --name=crash --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 \
    --size=64M --time_based --runtime=60 --output=crash.log &
fio_pid=$!
sleep 3
kill -9 "$pid"
# The supervisor starts a new server, which opens the image again and takes the device over.
for _ in $(seq 1 100); do
    now=$("$VDUSE_EXPORT" list --json | python3 -c 'import json,sys; print(next((e["pid"] for e in json.load(sys.stdin) if e["name"] == "k" and e["state"] == "running"), ""))')
    [ -n "$now" ] && [ "$now" != "$pid" ] && break
    sleep 0.1
done
[ -n "$now" ] && [ "$now" != "$pid" ] || fail "no new server took k over after kill -9"
kill "$fio_pid" 2>/dev/null || true
wait "$fio_pid" || true
"$VDUSE_EXPORT" del k || fail "del after the takeover failed"
cp crash.log "$RESULTS/"
written=$(grep -o 'WRITE: bw=[^,]*, [^,]*, io=[^ ,]*' crash.log | grep -o 'io=.*' || echo "io=?")
rc=0
qemu-img check k.qcow2 >kcheck.log 2>&1 || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || { cat kcheck.log; fail "qemu-img check after SIGKILL: exit $rc"; }
note "SIGKILL during 4k random writes, takeover by pid $now ($written): qemu-img check exit $rc, $(grep -o '[0-9]* leaked clusters' kcheck.log || echo 'no leaks')"
expect_no_disks
