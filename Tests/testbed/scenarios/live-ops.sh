# Live operations on a running disk (issue 21): ext4 mounted and fio (crc32c verify, random
# writes, 2 jobs on a 2-queue disk) running through three snapshots: one under full load, one
# with the file system frozen (the disk's checksum at that moment equals the frozen image's, and
# still does after more writes), one through QEMU's qemu.qmp client (blockdev-snapshot-sync).
# The frozen images are locked against writers; the record and `list` follow the switch; kill -9
# of the server: the supervisor's new one serves the last overlay, files intact; fsck clean; the
# disk equals its chain (qemu-img compare). Bad input: read-only export, existing PATH, no export.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img missing: scripts/install-deps testbed"
export PYTHONPATH=$PROJECT/.testbed/python
X=$VDUSE_EXPORT
export VDUSE_EXPORT_OVERLAY_DIR=$PWD/overlays
py() { local code=$1; shift; python3 -c "import json,sys; $code" "$@"; }
record() { $X list --json | py 'print([e for e in json.load(sys.stdin) if e["name"] == "live"][0][sys.argv[1]])' "$1"; }
# sha256 of an image as the disk would read it (a qcow2 chain converted to raw).
image_sum() { qemu-img convert -U -O raw "$1" flat.raw && sha256sum <flat.raw && rm -f flat.raw; }

truncate -s 64M disk.raw
mkfs.ext4 -q -F disk.raw
dev=$($X add disk.raw --name live --num-queues 2)
mkdir -p mnt
mount "$dev" mnt
head -c 4M /dev/urandom >mnt/before
before=$(sha256sum <mnt/before)
fio --name=live --directory=mnt --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --numjobs=2 \
    --size=12M --loops=2 --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_backlog=256 --output=fio.log &
fio_pid=$!
running() { kill -0 "$fio_pid" 2>/dev/null || fail "fio ended before snapshot $1: make it longer ($(cat fio.log))"; }

# 1: under load.
sleep 2; running 1
$X snapshot live --json >s1.json || fail "snapshot 1 under load"
py 'd=json.load(open("s1.json")); assert d["frozen"] == sys.argv[1] and d["active"] == sys.argv[2], d' \
    "$PWD/disk.raw" "$PWD/overlays/live-1.qcow2" || fail "snapshot 1: $(cat s1.json)"
[ "$(record image)" = "$PWD/overlays/live-1.qcow2" ] || fail "the record does not name the overlay: $($X list --json)"
note "snapshot 1 under fio load: disk.raw frozen, overlays/live-1.qcow2 active"

# 2: with the file system frozen, the disk's checksum equals the frozen image's.
sleep 1; running 2
fsfreeze -f mnt
sum2=$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum)
$X snapshot live "$PWD/two.qcow2" >s2.out || { fsfreeze -u mnt; fail "snapshot 2"; }
fsfreeze -u mnt
grep -qx "frozen $PWD/overlays/live-1.qcow2" s2.out && grep -qx "active $PWD/two.qcow2" s2.out || fail "snapshot 2 printed: $(cat s2.out)"
[ "$(image_sum overlays/live-1.qcow2)" = "$sum2" ] || fail "frozen image 2 differs from the disk at the snapshot"
note "snapshot 2 with ext4 frozen: overlays/live-1.qcow2 equals the disk at that moment"

# 3: QEMU's client, QEMU's command.
sleep 1; running 3
python3 - "$(record socket)" "$PWD/three.qcow2" <<'PY' || fail "qemu.qmp blockdev-snapshot-sync"
import asyncio, sys
from qemu.qmp import QMPClient
async def main():
    q = QMPClient("live-ops")
    await q.connect(sys.argv[1])
    await q.execute("blockdev-snapshot-sync", {"device": "live", "snapshot-file": sys.argv[2], "format": "qcow2"})
    await q.disconnect()
asyncio.run(main())
PY
[ "$(record image)" = "$PWD/three.qcow2" ] || fail "the record after the QMP snapshot: $($X list --json)"
note "snapshot 3 through qemu.qmp (blockdev-snapshot-sync): three.qcow2 active"

wait "$fio_pid" || { cat fio.log; fail "fio verify through three snapshots"; }
grep -q "err= 0" fio.log && ! grep -q "verify:" fio.log || { cat fio.log; fail "fio errors"; }
note "fio (2 jobs, randwrite, crc32c verify) clean through three snapshots"

# Frozen images: locked against writers, and unchanged by what was written after.
for img in disk.raw overlays/live-1.qcow2 two.qcow2; do
    rc=0; qemu-io -c "write 0 4k" "$img" >qio.out 2>&1 || rc=$?
    grep -q 'Failed to get "write" lock' qio.out || fail "$img could be written while frozen: $(cat qio.out)"
done
[ "$(image_sum overlays/live-1.qcow2)" = "$sum2" ] || fail "frozen image 2 changed after the snapshot"
note "frozen images locked against writers (qemu-io refused); image 2 unchanged after more writes"

# kill -9: the supervisor starts the server again with add's arguments (disk.raw); it serves the
# overlay the record names.
pid=$(record pid)
kill -KILL "$pid"
for _ in $(seq 1 100); do
    now=$($X list --json | py 'print(next((e["pid"] for e in json.load(sys.stdin) if e["name"] == "live" and e["state"] == "running"), ""))')
    [ -n "$now" ] && [ "$now" != "$pid" ] && break
    sleep 0.1
done
[ -n "$now" ] && [ "$now" != "$pid" ] || fail "no new server after kill -9"
[ "$(record image)" = "$PWD/three.qcow2" ] || fail "the new server does not serve the last overlay: $($X list --json)"
[ "$(sha256sum <mnt/before)" = "$before" ] || fail "a file written before the snapshots changed"
head -c 1M /dev/urandom >mnt/after && sync
note "kill -9 of server $pid: server $now serves three.qcow2, files intact, writable"

umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the snapshots"; }
qemu-img compare -U -f raw -F qcow2 "$dev" three.qcow2 || fail "the disk differs from its chain"
note "fsck clean; the disk equals three.qcow2 -> two.qcow2 -> live-1.qcow2 -> disk.raw"

# Bad input: no change, clear message, documented status.
rc=0; $X snapshot live two.qcow2 2>err || rc=$?
[ "$rc" = 3 ] && grep -q exists err || fail "snapshot to an existing file: exit $rc ($(cat err))"
rc=0; $X snapshot nosuch 2>err || rc=$?
[ "$rc" = 6 ] || fail "snapshot of no export: exit $rc ($(cat err))"
truncate -s 16M ro.raw
$X add ro.raw --name ro --read-only >/dev/null
rc=0; $X snapshot ro 2>err || rc=$?
[ "$rc" = 1 ] && grep -q read-only err || fail "snapshot of a read-only export: exit $rc ($(cat err))"
[ "$(record image)" = "$PWD/three.qcow2" ] && [ ! -e overlays/live-2.qcow2 ] && [ ! -e overlays/ro-1.qcow2 ] || fail "a refused snapshot left something: $(ls overlays)"
note "refused: existing PATH (3), no export (6), read-only export (1); nothing created"
$X del ro
$X del live
expect_no_disks
qemu-img check -q three.qcow2 || fail "three.qcow2 not clean after del"
