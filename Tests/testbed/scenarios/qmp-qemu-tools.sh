# QEMU's own QMP tooling against our QMP sockets (issue 20): the qemu.qmp library (PyPI, as
# tooling written for qemu-storage-daemon uses it) adds an iothread, a qcow2 node and an export on
# them at run time, fio verifies the disk, then deletes all of it (refusals while in use, the
# BLOCK_EXPORT_DELETED event); qmp-shell queries `add`'s server, which blockdev-snapshot then moves
# onto an overlay; raw sockets send commands with no
# newline, several in one write, and one byte at a time.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
export PYTHONPATH=$PROJECT/.testbed/python
[ -f "$PYTHONPATH/qemu/qmp/__init__.py" ] || fail "qemu.qmp missing: scripts/install-deps testbed"
TOOLS="python3 $PROJECT/Tests/testbed/qmp/qemu-tools.py"
truncate -s 16M base.img
qemu-img create -q -f qcow2 run.qcow2 64M
start_export srv --qmp "$PWD/qmp.sock" --blockdev "driver=file,node-name=f0,filename=$PWD/base.img" \
    --export type=vduse-blk,id=e0,node-name=f0,name=qmpbase,writable=on

out=$($TOOLS "$PWD/qmp.sock" add "$PWD/run.qcow2") || { echo "$out"; cat srv.err; fail "qemu.qmp: run-time add"; }
echo "$out" | sed 's/^/   /'
disk=$(echo "$out" | tail -n 1)
[ -b "$disk" ] || fail "no disk from the run-time export: $disk"
fio --name=v --filename="$disk" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 --size=16M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --output=fio.log || { cat fio.log; fail "fio on $disk"; }
grep -q "err= 0" fio.log || { cat fio.log; fail "fio errors on $disk"; }
note "qemu.qmp: object-add, blockdev-add (file + qcow2), block-export-add made $disk; fio verify clean"

out=$($TOOLS "$PWD/qmp.sock" remove) || { echo "$out"; cat srv.err; fail "qemu.qmp: run-time delete"; }
echo "$out" | sed 's/^/   /'
qemu-img check -q run.qcow2 || fail "the run-time qcow2 is not clean after its export was deleted"
note "qemu.qmp: block-export-del (event), blockdev-del, object-del; image clean"

# Raw sockets: no newline, several commands in one write, one byte at a time; garbage answered.
python3 - "$PWD/qmp.sock" <<'PY' || fail "raw QMP stream"
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)
f = s.makefile("rb")
json.loads(f.readline())
def replies(n): return [json.loads(f.readline()) for _ in range(n)]
s.sendall(b'{"execute":"qmp_capabilities"}{"execute":"query-version","id":1}{"execute":"query-block-exports","id":2}')
r = replies(3)
assert r[0] == {"return": {}} and r[1]["id"] == 1 and r[2]["return"][0]["id"] == "e0", r
for b in b'{"execute": "query-commands", "id": 3}':
    s.sendall(bytes([b])); time.sleep(0.002)
r = replies(1)[0]
assert r["id"] == 3 and any(c["name"] == "blockdev-add" for c in r["return"]), r
s.sendall(b'[1] {"execute": } {"execute": "query-version", "id": 4}')
r = replies(3)
assert "must be a JSON object" in r[0]["error"]["desc"] and "JSON parse error" in r[1]["error"]["desc"] and r[2]["id"] == 4, r
print("   raw stream: merged, byte by byte, garbage: ok")
PY
note "raw QMP: three commands in one write without newlines, one command byte by byte, garbage answered and the session goes on"
stop_export qmpbase

# add's own server: qmp-shell (QEMU's interactive client, from the same package) queries it.
dev=$("$VDUSE_EXPORT" add base.img --name shellq) || fail "add"
sock=/run/vduse-export/shellq.sock
out=$(echo "query-block-exports" | python3 -m qemu.qmp.qmp_shell "$sock" 2>&1) || { echo "$out"; fail "qmp-shell"; }
echo "$out" | grep -q '"node-name"' || { echo "$out"; fail "qmp-shell: no export listed"; }
echo "$out" | grep -q 'shellq' || { echo "$out"; fail "qmp-shell: not add's export"; }

# blockdev-snapshot as QEMU tooling drives it: the overlay made with qemu-img, added with
# blockdev-add (backing null), then put over the export's image; one that does not name the
# image as its backing file is refused first.
sum0=$(sha256sum <base.img)
qemu-img create -q -f qcow2 -b "$PWD/base.img" -F raw ov.qcow2
qemu-img create -q -f qcow2 stray.qcow2 16M
python3 - "$sock" "$PWD" <<'PY' || fail "qemu.qmp blockdev-add + blockdev-snapshot"
import asyncio, sys
from qemu.qmp import QMPClient, ExecuteError
async def main():
    q = QMPClient("snap")
    await q.connect(sys.argv[1])
    node = (await q.execute("query-block-exports"))[0]["node-name"]
    for n in ("ov", "stray"):
        await q.execute("blockdev-add", {"driver": "file", "node-name": n + "-f", "filename": f"{sys.argv[2]}/{n}.qcow2"})
        await q.execute("blockdev-add", {"driver": "qcow2", "node-name": n, "file": n + "-f", "backing": None})
    try:
        await q.execute("blockdev-snapshot", {"node": node, "overlay": "stray"})
        raise SystemExit("an overlay that does not name the image as its backing was accepted")
    except ExecuteError as e:
        assert "backing file" in str(e), str(e)
    await q.execute("blockdev-snapshot", {"node": node, "overlay": "ov"})
    await q.disconnect()
asyncio.run(main())
PY
dd if=/dev/urandom of=new.bin bs=64k count=4 status=none
dd if=new.bin of="$dev" bs=64k oflag=direct status=none
[ "$(sha256sum <base.img)" = "$sum0" ] || fail "base.img changed after blockdev-snapshot froze it"
qemu-img compare -U -q -f qcow2 -F raw ov.qcow2 "$dev" || fail "ov.qcow2 differs from the disk"
"$VDUSE_EXPORT" list --json | grep -q "$PWD/ov.qcow2" || fail "list does not name the overlay: $("$VDUSE_EXPORT" list --json)"
note "qemu.qmp: blockdev-add of a qemu-img overlay (backing null) + blockdev-snapshot: base.img frozen, writes in ov.qcow2, recorded; an overlay over another image refused"
"$VDUSE_EXPORT" del shellq || fail "del"
expect_no_disks
note "qmp-shell on add's socket answers query-block-exports"
