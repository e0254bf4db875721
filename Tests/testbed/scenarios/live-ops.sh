# Live operations on a running disk (issue 21): ext4 mounted and fio (crc32c verify, random
# writes, 2 jobs on a 2-queue disk) running through three snapshots: one under full load, one
# with the file system frozen (the disk's checksum at that moment equals the frozen image's, and
# still does after more writes), one through QEMU's qemu.qmp client (blockdev-snapshot-sync).
# The frozen images are locked against writers; the record and `list` follow the switch; kill -9
# of the server: the supervisor's new one serves the last overlay, files intact; fsck clean; the
# disk equals its chain (qemu-img compare). block-commit through qemu.qmp, cancelled once ready
# (its events; the disk stays put); `commit` under fio load merges the chain into the base and
# deletes the overlays (fio verify clean, fsck clean, disk = base). Bad input: read-only export,
# existing PATH, no export, nothing to commit. `mirror` raw -> qcow2 under fio load (source deleted),
# then qemu.qmp blockdev-mirror qcow2 -> raw at 1 MiB/s, freed by block-job-set-speed, completed
# on BLOCK_JOB_READY (fio clean, fsck clean, disk = target); kill -9 with a mirror ready: the new
# server serves the source; mirror refusals: too small, holds data, locked by another writer,
# unreachable NBD server; del with a mirror job running. Network targets and --persist: live-ops-net.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img missing: scripts/install-deps testbed"
export PYTHONPATH=$PROJECT/.testbed/python
X=$VDUSE_EXPORT
export VDUSE_EXPORT_OVERLAY_DIR=$PWD/overlays
py() { local code=$1; shift; python3 -c "import json,sys; $code" "$@"; }
record() { $X list --json | py 'print([e for e in json.load(sys.stdin) if e["name"] == "live"][0][sys.argv[1]])' "$1"; }
# sha256 of an image as the disk would read it (a qcow2 chain converted to raw).
image_sum() { qemu-img convert -U -O raw "$1" flat.raw && sha256sum <flat.raw && rm -f flat.raw; }

truncate -s 32M disk.raw
mkfs.ext4 -q -F disk.raw
dev=$($X add disk.raw --name live --num-queues 2)
mkdir -p mnt
mount "$dev" mnt
head -c 4M /dev/urandom >mnt/before
before=$(sha256sum <mnt/before)
fio_loop_start snapshots

# 1: under load.
sleep 1; fio_loop_running 1
$X snapshot live --json >s1.json || fail "snapshot 1 under load"
py 'd=json.load(open("s1.json")); assert d["frozen"] == sys.argv[1] and d["active"] == sys.argv[2], d' \
    "$PWD/disk.raw" "$PWD/overlays/live-1.qcow2" || fail "snapshot 1: $(cat s1.json)"
[ "$(record image)" = "$PWD/overlays/live-1.qcow2" ] || fail "the record does not name the overlay: $($X list --json)"
step "snapshot 1 under fio load: disk.raw frozen, overlays/live-1.qcow2 active"

# 2: with the file system frozen, the disk's checksum equals the frozen image's.
fio_loop_running 2
fsfreeze -f mnt
sum2=$(dd if="$dev" bs=1M iflag=direct status=none | sha256sum)
$X snapshot live "$PWD/two.qcow2" >s2.out || { fsfreeze -u mnt; fail "snapshot 2"; }
fsfreeze -u mnt
grep -qx "frozen $PWD/overlays/live-1.qcow2" s2.out && grep -qx "active $PWD/two.qcow2" s2.out || fail "snapshot 2 printed: $(cat s2.out)"
[ "$(image_sum overlays/live-1.qcow2)" = "$sum2" ] || fail "frozen image 2 differs from the disk at the snapshot"
step "snapshot 2 with ext4 frozen: overlays/live-1.qcow2 equals the disk at that moment"

# 3: QEMU's client, QEMU's command.
fio_loop_running 3
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
step "snapshot 3 through qemu.qmp (blockdev-snapshot-sync): three.qcow2 active"

fio_loop_stop snapshots
step "fio (2 jobs, randwrite, crc32c verify): $FIO_ROUNDS rounds clean through three snapshots"

# Frozen images: locked against writers, and unchanged by what was written after.
for img in disk.raw overlays/live-1.qcow2 two.qcow2; do
    rc=0; qemu-io -c "write 0 4k" "$img" >qio.out 2>&1 || rc=$?
    grep -q 'Failed to get "write" lock' qio.out || fail "$img could be written while frozen: $(cat qio.out)"
done
[ "$(image_sum overlays/live-1.qcow2)" = "$sum2" ] || fail "frozen image 2 changed after the snapshot"
step "frozen images locked against writers (qemu-io refused); image 2 unchanged after more writes"

# kill -9: the supervisor starts the server again with add's arguments (disk.raw); it serves the
# overlay the record names.
# kill_server: kill -9 of the server; waits for the supervisor's new one (sets pid, now).
kill_server() {
    pid=$(record pid)
    kill -KILL "$pid"
    for _ in $(seq 1 200); do
        now=$($X list --json | py 'print(next((e["pid"] for e in json.load(sys.stdin) if e["name"] == "live" and e["state"] == "running"), ""))')
        [ -n "$now" ] && [ "$now" != "$pid" ] && return
        sleep 0.1
    done
    tail -20 /run/vduse-export/live.log >&2
    fail "no new server after kill -9 of $pid"
}
kill_server
[ "$(record image)" = "$PWD/three.qcow2" ] || fail "the new server does not serve the last overlay: $($X list --json)"
[ "$(sha256sum <mnt/before)" = "$before" ] || fail "a file written before the snapshots changed"
head -c 1M /dev/urandom >mnt/after && sync
step "kill -9 of server $pid: server $now serves three.qcow2, files intact, writable"

umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the snapshots"; }
qemu-img compare -U -f raw -F qcow2 "$dev" three.qcow2 >/dev/null || fail "the disk differs from its chain"
step "fsck clean; the disk equals three.qcow2 -> two.qcow2 -> live-1.qcow2 -> disk.raw"
mount "$dev" mnt

# block-commit through qemu.qmp, cancelled once ready: the events, and the disk stays put.
python3 - "$(record socket)" >jobs.log <<'PY' || { cat jobs.log; fail "qemu.qmp block-commit + job-cancel"; }
import asyncio, sys
from qemu.qmp import QMPClient
async def main():
    q = QMPClient("live-ops")
    await q.connect(sys.argv[1])
    seen = []
    async def until(name, **match):
        while True:
            e = await asyncio.wait_for(q.events.get(), 60)
            d = e.get("data", {})
            seen.append((e["event"], d.get("status", "")))
            if e["event"] == name and all(d.get(k) == v for k, v in match.items()):
                return d
    await q.execute("block-commit", {"device": "live", "job-id": "c1", "auto-dismiss": False})
    ready = await until("BLOCK_JOB_READY", device="c1")
    assert ready["type"] == "commit" and ready["len"] == ready["offset"] and ready["len"] > 0, ready
    jobs = await q.execute("query-block-jobs")
    assert jobs[0]["device"] == "c1" and jobs[0]["ready"] and jobs[0]["status"] == "ready", jobs
    await q.execute("job-cancel", {"id": "c1"})
    await until("BLOCK_JOB_CANCELLED", device="c1")
    await until("JOB_STATUS_CHANGE", id="c1", status="concluded")
    assert [j["status"] for j in await q.execute("query-jobs")] == ["concluded"]
    await q.execute("job-dismiss", {"id": "c1"})
    await until("JOB_STATUS_CHANGE", id="c1", status="null")
    assert await q.execute("query-jobs") == []
    statuses = [s for e, s in seen if e == "JOB_STATUS_CHANGE"]
    assert statuses == ["created", "running", "ready", "aborting", "concluded", "null"], statuses
    print("events:", " ".join(f"{e}({s})" if s else e for e, s in seen))
    await q.disconnect()
asyncio.run(main())
PY
cat jobs.log
[ "$(record image)" = "$PWD/three.qcow2" ] || fail "a cancelled commit moved the disk: $($X list --json)"
[ "$(sha256sum <mnt/before)" = "$before" ] || fail "a file changed after the cancelled commit"
step "qemu.qmp: block-commit ready, job-cancel: JOB_STATUS_CHANGE, BLOCK_JOB_READY, BLOCK_JOB_CANCELLED; disk stays on three.qcow2"

# commit (the verb) under fio load: the chain merged into disk.raw, the overlays deleted.
fio_loop_start commit
sleep 1; fio_loop_running commit
$X commit live --json >commit.json || { cat commit.json; fail "commit"; }
fio_loop_running "the end of the commit"
fio_loop_stop commit
tail -1 commit.json | py 'd=json.loads(sys.stdin.read()); assert d["image"] == sys.argv[1] and d["deleted"] and len(d["merged"]) == 3, d' "$PWD/disk.raw" \
    || fail "commit printed: $(tail -1 commit.json)"
grep -q '"status":"ready"' commit.json && grep -q '"status":"concluded"' commit.json || fail "commit's progress: $(cat commit.json)"
[ "$(record image)" = disk.raw ] || [ "$(record image)" = "$PWD/disk.raw" ] || fail "the record after the commit: $($X list --json)"
[ ! -e three.qcow2 ] && [ ! -e two.qcow2 ] && [ ! -e overlays/live-1.qcow2 ] || fail "merged overlays left: $(ls . overlays)"
[ "$(sha256sum <mnt/before)" = "$before" ] || fail "a file changed by the commit"
step "commit under fio load: $(grep -c . commit.json) progress lines, disk on disk.raw, 3 overlays deleted, fio verify clean ($FIO_ROUNDS rounds)"
umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the commit"; }
cmp "$dev" disk.raw || fail "the disk differs from disk.raw after the commit"
rc=0; $X commit live 2>err || rc=$?
[ "$rc" = 1 ] && grep -q "nothing to commit" err || fail "commit with no overlay: exit $rc ($(cat err))"
step "fsck clean, the disk equals disk.raw; commit with no overlay refused (exit 1)"

# Bad input: no change, clear message, documented status.
touch exists.qcow2
rc=0; $X snapshot live exists.qcow2 2>err || rc=$?
[ "$rc" = 3 ] && grep -q exists err || fail "snapshot to an existing file: exit $rc ($(cat err))"
rc=0; $X snapshot nosuch 2>err || rc=$?
[ "$rc" = 6 ] || fail "snapshot of no export: exit $rc ($(cat err))"
truncate -s 32M ro.raw
$X add ro.raw --name ro --read-only >/dev/null
rc=0; $X snapshot ro 2>err || rc=$?
[ "$rc" = 1 ] && grep -q read-only err || fail "snapshot of a read-only export: exit $rc ($(cat err))"
[ "$(record image)" = "$PWD/disk.raw" ] && [ ! -e overlays/live-2.qcow2 ] && [ ! -e overlays/ro-1.qcow2 ] || fail "a refused snapshot left something: $(ls overlays)"
step "refused: existing PATH (3), no export (6), read-only export (1); nothing created"

# mirror (the verb) raw -> qcow2 under fio load: the disk moves, disk.raw is deleted.
mount "$dev" mnt
fio_loop_start mirror
sleep 1; fio_loop_running mirror
$X mirror live moved.qcow2 --speed 1G --json >mirror.json || { cat mirror.json; fail "mirror to qcow2"; }
fio_loop_running "the end of the mirror"
fio_loop_stop mirror
tail -1 mirror.json | py 'd=json.loads(sys.stdin.read()); assert d["image"] == sys.argv[1] and d["sourceDeleted"], d' "$PWD/moved.qcow2" \
    || fail "mirror printed: $(tail -1 mirror.json)"
[ "$(record image)" = "$PWD/moved.qcow2" ] && [ ! -e disk.raw ] || fail "after the mirror: $($X list --json; ls)"
qemu-img info -U moved.qcow2 | grep -q "file format: qcow2" || fail "moved.qcow2 is not qcow2"
[ "$(sha256sum <mnt/before)" = "$before" ] || fail "a file changed by the mirror"
step "mirror disk.raw -> moved.qcow2 under fio load: $(grep -c . mirror.json) progress lines, disk.raw deleted, fio clean ($FIO_ROUNDS rounds)"

# blockdev-mirror through qemu.qmp, qcow2 -> raw (an existing empty file), completed on READY.
truncate -s 32M back.raw
fio_loop_start qmpmirror
python3 - "$(record socket)" "$PWD/back.raw" >mirror.log <<'PY' || { cat mirror.log; fail "qemu.qmp blockdev-mirror"; }
import asyncio, sys
from qemu.qmp import QMPClient, ExecuteError
async def main():
    q = QMPClient("live-ops")
    await q.connect(sys.argv[1])
    seen = []
    async def until(name, **match):
        while True:
            e = await asyncio.wait_for(q.events.get(), 120)
            d = e.get("data", {})
            seen.append(e["event"] + (f"({d['status']})" if "status" in d else ""))
            if e["event"] == name and all(d.get(k) == v for k, v in match.items()):
                return d
    await q.execute("blockdev-add", {"driver": "file", "node-name": "back-file", "filename": sys.argv[2]})
    await q.execute("blockdev-add", {"driver": "raw", "node-name": "back", "file": "back-file"})
    # At 1 MiB/s the 32 MiB copy crawls (unlimited it ends within a second here); speed 0 frees it.
    await q.execute("blockdev-mirror", {"job-id": "m1", "device": "live", "target": "back", "sync": "full",
                                        "speed": 1 << 20})
    await asyncio.sleep(1.5)
    [job] = await q.execute("query-block-jobs")
    assert job["speed"] == 1 << 20 and not job["ready"] and job["offset"] < 8 << 20, job
    for bad, cls, text in [({"device": "m1", "speed": -1}, "GenericError", "Invalid parameter 'speed'"),
                           ({"device": "nope", "speed": 0}, "DeviceNotActive", "Block job 'nope' not found")]:
        try:
            await q.execute("block-job-set-speed", bad)
            raise AssertionError(f"block-job-set-speed {bad} accepted")
        except ExecuteError as e:
            assert (e.error_class, str(e)) == (cls, text), (e.error_class, str(e))
    await q.execute("block-job-set-speed", {"device": "m1", "speed": 0})
    print("limited: offset", job["offset"], "after 1.5 s at 1 MiB/s")
    ready = await until("BLOCK_JOB_READY", device="m1")
    assert ready["type"] == "mirror" and ready["offset"] >= 32 << 20, ready
    await q.execute("job-complete", {"id": "m1"})
    done = await until("BLOCK_JOB_COMPLETED", device="m1")
    assert "error" not in done and done["offset"] >= 32 << 20, done
    await until("JOB_STATUS_CHANGE", id="m1", status="null")
    assert await q.execute("query-jobs") == []
    print("events:", " ".join(seen))
    await q.disconnect()
asyncio.run(main())
PY
cat mirror.log
fio_loop_running "the end of the QMP mirror"
fio_loop_stop qmpmirror
[ "$(record image)" = "$PWD/back.raw" ] || fail "the record after blockdev-mirror: $($X list --json)"
umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the mirrors"; }
cmp "$dev" back.raw || fail "the disk differs from back.raw"
step "qemu.qmp blockdev-mirror moved.qcow2 -> back.raw under fio load, speed 1 MiB/s then block-job-set-speed 0, job-complete on READY: fio clean, fsck clean, disk = back.raw"

# kill -9 with a mirror job ready but not completed: the new server serves the source.
truncate -s 32M killed.raw
python3 - "$(record socket)" "$PWD/killed.raw" <<'PY' || fail "qemu.qmp: a mirror to kill"
import asyncio, sys
from qemu.qmp import QMPClient
async def main():
    q = QMPClient("live-ops")
    await q.connect(sys.argv[1])
    await q.execute("blockdev-add", {"driver": "file", "node-name": "k-file", "filename": sys.argv[2]})
    await q.execute("blockdev-add", {"driver": "raw", "node-name": "k", "file": "k-file"})
    await q.execute("blockdev-mirror", {"job-id": "m2", "device": "live", "target": "k", "sync": "full"})
    while (await asyncio.wait_for(q.events.get(), 120))["event"] != "BLOCK_JOB_READY":
        pass
    await q.disconnect()
asyncio.run(main())
PY
kill_server
[ "$(record image)" = "$PWD/back.raw" ] || fail "after kill -9 during a mirror the record names $(record image)"
cmp "$dev" back.raw || fail "after kill -9 during a mirror the disk differs from its source"
step "kill -9 with a mirror ready (not completed): server $pid -> $now serves back.raw, the source; disk unchanged"

# Mirror refusals: the disk stays on back.raw, nothing is left behind.
truncate -s 16M small.raw
rc=0; $X mirror live small.raw 2>err || rc=$?
[ "$rc" = 1 ] && grep -q "disk's size" err || fail "mirror to a too small file: exit $rc ($(cat err))"
head -c 32M /dev/urandom >full.raw
rc=0; $X mirror live full.raw 2>err || rc=$?
[ "$rc" = 3 ] && grep -q -- "--force" err || fail "mirror to a file with data: exit $rc ($(cat err))"
rc=0; $X mirror live ro.raw --force 2>err || rc=$?
[ "$rc" = 3 ] && grep -q 'lock' err || fail "mirror to an image another export holds: exit $rc ($(cat err))"
rc=0; $X mirror live nbd://127.0.0.1:1/x 2>err || rc=$?
[ "$rc" = 4 ] && grep -q "connect" err || fail "mirror to an unreachable NBD server: exit $rc ($(cat err))"
[ "$(record image)" = "$PWD/back.raw" ] && $X list --json | py 'assert not [e for e in json.load(sys.stdin) if e.get("job")]' || fail "a refused mirror moved the disk"
cmp "$dev" back.raw || fail "a refused mirror changed the disk"
step "mirror refused: too small (1), holds data (3), locked by another writer (3), unreachable NBD server (4); disk unchanged"
$X del ro
# del with a mirror job running: the job is cancelled first, then the disk removed.
python3 - "$(record socket)" "$PWD/killed.raw" <<'PY' || fail "qemu.qmp: a mirror left running"
import asyncio, sys
from qemu.qmp import QMPClient
async def main():
    q = QMPClient("live-ops")
    await q.connect(sys.argv[1])
    await q.execute("blockdev-add", {"driver": "file", "node-name": "k-file", "filename": sys.argv[2]})
    await q.execute("blockdev-add", {"driver": "raw", "node-name": "k", "file": "k-file"})
    await q.execute("blockdev-mirror", {"job-id": "m3", "device": "live", "target": "k", "sync": "full"})
    assert [j["id"] for j in await q.execute("query-jobs")] == ["m3"]
    await q.disconnect()
asyncio.run(main())
PY
$X del live
expect_no_disks
qemu-io -f raw -c "write 0 4k" back.raw >qio.out 2>&1 || fail "back.raw still locked after del with a job: $(cat qio.out)"
step "del with a mirror job running: job cancelled, disk removed, back.raw unlocked"
