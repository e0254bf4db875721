# Live mirror to network targets (issue 21), and what follows a switch: an ext4-mounted disk made
# with `add --persist` under fio (crc32c verify, 2 jobs, 2 queues) is mirrored by the verb from its
# file to an NBD export (nbdkit's file plugin over tmpfs, unix socket) while `list` shows the job
# and its progress; 0 fio errors, fsck clean, the disk equals the export's file, the record and the
# persistent configuration (and its drop-in) name the NBD URI, the source is deleted; `restart` serves the export.
# The server SIGKILLed during mirrors to NBD, under fio (the test-only crash points of live-crash):
# mid-copy, the supervisor's new server serves the source and the configuration still names it;
# after the switch is recorded (before the configuration follows), the new server serves the target
# and the configuration names it; fio verify clean, the disk equals the target's file.
# Then QEMU's qemu.qmp client: blockdev-add driver=nbd + blockdev-mirror to a second export, `list`
# shows the job ready at 100 %, job-complete; the disk equals that export. A "reboot": the server
# stopped, `serve` started as the unit starts it from the configuration: it serves the second
# export with the files intact. Refusals: a target too small (1), one that holds data (3),
# --format qcow2 (1), an unreachable server (4); nothing changes.
# timeout: 400
source "$PROJECT/Tests/testbed/scenario-lib.sh"
for c in nbdkit nbdinfo fio python3; do command -v $c >/dev/null || fail "$c missing: scripts/install-deps testbed"; done
export PYTHONPATH=$PROJECT/.testbed/python
X=$VDUSE_EXPORT
T0=$SECONDS
step() { note "[$((SECONDS - T0))s] $*"; }
crash_points_enable
py() { local code=$1; shift; python3 -c "import json,sys; $code" "$@"; }
record() { $X list --json | py 'print([e for e in json.load(sys.stdin) if e["name"] == "net"][0][sys.argv[1]])' "$1"; }

# `add --persist` as on a host, in this guest: the configuration under $PWD/etc, the drop-in under
# $PWD/units, and systemctl (offline: no systemd runs here) enabling the unit in a tmpfs over the
# read-only /etc/systemd/system that holds the project's unit file.
export VDUSE_EXPORT_CONFIG_DIR=$PWD/etc VDUSE_EXPORT_UNIT_DIR=$PWD/units
mkdir -p units
mount -t tmpfs units /etc/systemd/system
cp "$PROJECT/systemd/vduse-export@.service" /etc/systemd/system/
conf=$PWD/etc/net.conf
args() { sed -n 's/^VDUSE_EXPORT_ARGS=//p' "$conf"; }

# One nbdkit serves every file of exports/ (the export name is the file name), on tmpfs.
mkdir -p exports
truncate -s 32M exports/t1 exports/t2
truncate -s 16M exports/small
head -c 32M /dev/urandom >exports/used
sock=$PWD/nbd.sock
nbdkit -f -U "$sock" file dir="$PWD/exports" >nbdkit.log 2>&1 &
nbdkit_pid=$!
cleanup() {
    cp /run/vduse-export/*.log "$RESULTS/" 2>/dev/null || true
    kill "$nbdkit_pid" 2>/dev/null || true
    umount /etc/systemd/system 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do nbdinfo --can connect "nbd+unix:///t1?socket=$sock" 2>/dev/null && break; sleep 0.1; done
uri1="nbd+unix:///t1?socket=$sock" uri2="nbd+unix:///t2?socket=$sock"

truncate -s 32M disk.raw
mkfs.ext4 -q -F disk.raw
dev=$($X add "$PWD/disk.raw" --name net --num-queues 2 --persist) || fail "add --persist"
grep -q "filename=$PWD/disk.raw" "$conf" || fail "net.conf: $(cat "$conf")"
mkdir -p mnt
mount "$dev" mnt
head -c 4M /dev/urandom >mnt/before
before=$(sha256sum <mnt/before)
step "add --persist: $dev, net.conf names disk.raw; nbdkit serving exports/ on $sock"


# 1. mirror (the verb) file -> NBD under fio load; `list` polled meanwhile.
fio_loop_start nbd
sleep 1; fio_loop_running nbd
$X mirror net "$uri1" --json >mirror.json 2>mirror.err &
mirror_pid=$!
: >seen.json; : >seen.txt
# Each look costs a start of the binary under TCG next to fio: the copy may outrun a few of them.
while kill -0 "$mirror_pid" 2>/dev/null; do
    $X list --json | py 'e=[e for e in json.load(sys.stdin) if e["name"] == "net"][0]; e.get("job") and print(json.dumps(e["job"]))' >>seen.json
    $X list | grep '^net ' | grep -E ' mirror [0-9]+%' >>seen.txt || true
done
wait "$mirror_pid" || { cat mirror.json mirror.err; fail "mirror to $uri1"; }
fio_loop_running "the end of the mirror"
fio_loop_stop nbd
tail -1 mirror.json | py 'd=json.loads(sys.stdin.read()); assert d["image"] == sys.argv[1] and d["sourceDeleted"], d' "$uri1" \
    || fail "mirror printed: $(tail -1 mirror.json)"
[ "$(record image)" = "$uri1" ] && [ ! -e disk.raw ] || fail "after the mirror: $($X list --json; ls)"
py '
jobs = [json.loads(l) for l in open("seen.json") if l.strip()]
assert all(j["id"] == "mirror-net" and j["type"] == "mirror" and j["length"] >= 32 << 20 for j in jobs), jobs
print(f"{len(jobs)} JSON looks", sorted({j["status"] for j in jobs}), "offsets", [j["offset"] for j in jobs])
' >seen.out || fail "list --json during the mirror: $(cat seen.json)"
[ -s seen.json ] || [ -s seen.txt ] || fail "list never showed the mirror job while it ran"
[ -z "$($X list --json | py 'print([e.get("job") for e in json.load(sys.stdin) if e["name"] == "net"][0] or "")')" ] \
    || fail "list still shows a job after the mirror"
grep -q "driver=nbd,node-name=disk0,server.type=unix,server.path=$sock,export=t1 " "$conf" && ! grep -q disk.raw "$conf" \
    || fail "net.conf after the mirror: $(cat "$conf")"
grep -qx "After=network-online.target" units/vduse-export@net.service.d/persist.conf || fail "drop-in: $(cat units/*/persist.conf)"
step "mirror disk.raw -> $uri1 under fio: fio clean ($FIO_ROUNDS rounds); list showed the job ($(cat seen.out); plain: $(sed 's/.*  //' seen.txt | tr '\n' ' ')); record and net.conf name the URI; disk.raw deleted"
umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the mirror"; }
cmp "$dev" exports/t1 || fail "the disk differs from the NBD export's file"
step "fsck clean; the disk equals exports/t1"

# 2. restart: the new server serves the NBD export the record names.
$X restart net >/dev/null || fail "restart"
[ "$(record image)" = "$uri1" ] || fail "after restart the record names $(record image)"
mount "$dev" mnt
[ "$(sha256sum <mnt/before)" = "$before" ] || fail "a file changed across the mirror and restart"
head -c 1M /dev/urandom >mnt/after && sync
after=$(sha256sum <mnt/after)
step "restart: pid $(record pid) serves $uri1; files intact, writable"

# 2b. The server SIGKILLed during a mirror to NBD (the test-only crash points, as in live-crash),
# under fio: killed mid-copy, the supervisor's new server serves the source and net.conf still
# names it (k1 is left half-written, never served); killed once the switch is recorded, before
# net.conf follows, the new server serves the target and makes net.conf name it.
truncate -s 32M exports/k1 exports/k2
uri_k1="nbd+unix:///k1?socket=$sock" uri_k2="nbd+unix:///k2?socket=$sock"
fio_loop_start crash
crash net mid-copy "$uri1" mirror net "$uri_k1"
grep -q "export=t1 " "$conf" || fail "net.conf after the kill mid-copy: $(cat "$conf")"
crash net after-switch "$uri_k2" mirror net "$uri_k2"
grep -q "the switch to $uri_k2 was recorded" verb.err || fail "mirror killed after its switch said: $(cat verb.err)"
grep -q "export=k2 " "$conf" || fail "net.conf after the kill after the switch: $(cat "$conf")"
fio_loop_running "the end of the kills"
fio_loop_stop crash
umount mnt
cmp "$dev" exports/k2 || fail "the disk differs from exports/k2"
mount "$dev" mnt
[ "$(sha256sum <mnt/before)" = "$before" ] && [ "$(sha256sum <mnt/after)" = "$after" ] || fail "files changed across the kills"
step "kills during mirrors to NBD: fio verify clean ($FIO_ROUNDS rounds); net.conf named t1, then k2; the disk equals exports/k2"

# 3. QEMU's client: blockdev-add driver=nbd + blockdev-mirror; list shows the job ready; job-complete.
python3 - "$(record socket)" "$sock" "$X" >qmp.log <<'PY' || { cat qmp.log; fail "qemu.qmp blockdev-mirror to NBD"; }
import asyncio, json, subprocess, sys
from qemu.qmp import QMPClient
async def main():
    q = QMPClient("live-ops-net")
    await q.connect(sys.argv[1])
    async def until(name, **match):
        while True:
            e = await asyncio.wait_for(q.events.get(), 120)
            d = e.get("data", {})
            if e["event"] == name and all(d.get(k) == v for k, v in match.items()):
                return d
    await q.execute("blockdev-add", {"driver": "nbd", "node-name": "t2", "export": "t2",
                                     "server": {"type": "unix", "path": sys.argv[2]}})
    await q.execute("blockdev-mirror", {"job-id": "m2", "device": "net", "target": "t2", "sync": "full"})
    await until("BLOCK_JOB_READY", device="m2")
    # `list` reads the job beside the record (this client holds the QMP socket).
    listed = [e for e in json.loads(subprocess.check_output([sys.argv[3], "list", "--json"])) if e["name"] == "net"][0]
    job = listed.get("job")
    assert job and job["id"] == "m2" and job["type"] == "mirror" and job["status"] == "ready" and job["offset"] >= 32 << 20, listed
    plain = subprocess.check_output([sys.argv[3], "list"], text=True)
    assert any(l.startswith("net ") and " mirror " in l and l.endswith("% ready") for l in plain.splitlines()), plain
    print("list while ready:", [l for l in plain.splitlines() if l.startswith("net ")][0])
    await q.execute("job-complete", {"id": "m2"})
    done = await until("BLOCK_JOB_COMPLETED", device="m2")
    assert "error" not in done, done
    await q.disconnect()
asyncio.run(main())
PY
[ "$(record image)" = "$uri2" ] || fail "the record after blockdev-mirror: $($X list --json)"
grep -q "export=t2 " "$conf" || fail "net.conf after blockdev-mirror: $(cat "$conf")"
sync
cmp "$dev" exports/t2 || fail "the disk differs from exports/t2"
step "qemu.qmp blockdev-add driver=nbd + blockdev-mirror: $(sed -n 's/^list while ready: //p' qmp.log | sed 's/  */ /g'); job-complete; record and net.conf name $uri2; disk = exports/t2"

# 4. Refusals: nothing changes.
rc=0; $X mirror net "nbd+unix:///small?socket=$sock" 2>err || rc=$?
[ "$rc" = 1 ] && grep -q "disk's size" err || fail "mirror to a too small export: exit $rc ($(cat err))"
rc=0; $X mirror net "nbd+unix:///used?socket=$sock" 2>err || rc=$?
[ "$rc" = 3 ] && grep -q -- "--force" err || fail "mirror to an export with data: exit $rc ($(cat err))"
rc=0; $X mirror net "nbd+unix:///t1?socket=$sock" --format qcow2 2>err || rc=$?
[ "$rc" = 1 ] && grep -q raw err || fail "mirror to NBD as qcow2: exit $rc ($(cat err))"
rc=0; $X mirror net "nbd+unix:///t1?socket=$PWD/nosuch.sock" 2>err || rc=$?
[ "$rc" = 4 ] && grep -q "connect" err || fail "mirror to an unreachable server: exit $rc ($(cat err))"
[ "$(record image)" = "$uri2" ] && cmp "$dev" exports/t2 && grep -q "export=t2 " "$conf" || fail "a refused mirror changed something"
step "refused: too small (1), holds data (3), --format qcow2 (1), unreachable (4); disk, record and net.conf unchanged"

# 5. "Reboot": the server stops (its records go, as /run would), then `serve` starts as the unit
# starts it, from net.conf alone: the disk comes back on exports/t2.
umount mnt
pid=$(record pid)
kill -TERM "$pid"
for _ in $(seq 1 100); do [ -e /dev/vduse/net ] || break; sleep 0.1; done
[ ! -e /dev/vduse/net ] || fail "the server did not stop"
# shellcheck disable=SC2046
$X serve --record --qmp /run/vduse-export/net.sock $(args) >serve.log 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do [ "$($X list --json | py 'print(any(e["name"] == "net" and e["state"] == "running" for e in json.load(sys.stdin)))')" = True ] && break; sleep 0.2; done
[ "$(record image)" = "$uri2" ] || { cat serve.log; fail "serve from net.conf: $($X list --json)"; }
dev=$(record device)
mount "$dev" mnt
[ "$(sha256sum <mnt/before)" = "$before" ] && [ "$(sha256sum <mnt/after)" = "$after" ] || fail "files changed across the reboot"
umount mnt
fsck.ext4 -fn "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the reboot"; }
step "reboot: serve with net.conf's arguments serves $uri2 on $dev; files intact, fsck clean"

$X del net || fail "del"
wait "$serve_pid" 2>/dev/null || true
[ ! -e "$conf" ] || fail "del left net.conf"
expect_no_disks
step "del: export and net.conf gone"
