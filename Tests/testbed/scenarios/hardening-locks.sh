# Issue 15, items 2, 3 and 10: QEMU-compatible image locks (a second writer is refused, by us
# and by QEMU, both ways; --force-share only for readers); a client that goes away costs the
# server nothing (QMP probes, an interrupted add's ready pipe); two concurrent adds of one image
# both get the disk. Also: serve --qmp refuses a path that is not a socket.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
truncate -s 64M img.img

# --- item 2: two writers ---
dev=$($X add img.img --name a)
rc=0; $X add img.img --name b 2>err.txt || rc=$?
[ "$rc" -eq 3 ] && grep -q 'Failed to get "write" lock' err.txt && grep -qF "Is another process using the image [$PWD/img.img]?" err.txt \
    || fail "a second writable export of one image: exit $rc, $(cat err.txt)"
[ ! -e /dev/vduse/b ] || fail "the refused export left /dev/vduse/b"
expect_exit 3 'Failed to get shared "write" lock' -- $X add img.img --name c --read-only
expect_exit 1 "force-share=on can only be used with read-only images" -- $X add img.img --name d --force-share
rodev=$($X add img.img --name r --read-only --force-share) || fail "read-only --force-share beside a writer was refused"
note "our writer: a second writer refused (exit 3, QEMU's message), a reader too; read-only --force-share allowed"

# QEMU sees our locks: a QEMU writer is refused (a QEMU reader shares writes, as QEMU's raw readers do).
rc=0; qemu-io -f raw -c "read 0 512" img.img >qemu.txt 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q 'Failed to get "write" lock' qemu.txt || fail "qemu-io (a writer) beside our writer: exit $rc, $(cat qemu.txt)"
qemu-io -r -f raw -c "read 0 512" img.img >/dev/null || fail "qemu-io -r (a reader) beside our writer was refused"
$X del r && $X del a || fail "del"
note "QEMU sees our writer: qemu-io (read-write) refused with its own message; qemu-io -r allowed"

# ...and we see QEMU's: qemu-io holds the image open for writing while it sleeps.
qemu-io -f raw -c "sleep 600000" img.img &   # (killed below; 10 min outlasts a loaded run)
qpid=$!
held() { python3 -c "import fcntl,os,struct,sys; fd=os.open(sys.argv[1], os.O_RDONLY); r=fcntl.fcntl(fd, 36, struct.pack('hhqqi', fcntl.F_WRLCK, 0, int(sys.argv[2]), 1, 0)); sys.exit(0 if struct.unpack('hhqqi', r)[0] != fcntl.F_UNLCK else 1)" "$1" "$2"; }
for _ in $(seq 1 100); do held img.img 101 && break; sleep 0.1; done
held img.img 101 || fail "qemu-io did not take QEMU's write lock byte (101)"
rc=0; $X add img.img --name q 2>err.txt || rc=$?
# (QEMU's own check order decides which of its two messages a conflict gets.)
[ "$rc" -eq 3 ] && grep -q 'Failed to get \(shared \)\?"write" lock' err.txt || fail "add beside a QEMU writer: exit $rc, $(cat err.txt)"
expect_exit 3 'Failed to get shared "write" lock' -- $X add img.img --name q --read-only
$X add img.img --name q --read-only --force-share >/dev/null || fail "read-only --force-share beside a QEMU writer"
$X del q
kill "$qpid"; wait "$qpid" 2>/dev/null || true
note "we see QEMU's writer: add and add --read-only refused (exit 3); read-only --force-share allowed"

# --- item 3: clients that go away ---
dev=$($X add img.img --name p)
srv=$($X list --json | json '[e["pid"] for e in d if e["name"] == "p"][0]')
python3 - /run/vduse-export/p.sock <<'PY'
import socket, sys
for _ in range(3):  # a health probe: connect, close
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.close()
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])  # commands, gone before the replies
s.sendall(b'{"execute":"qmp_capabilities"}\n' + b'{"execute":"query-block-exports"}\n' * 200)
s.close()
PY
sleep 1
kill -0 "$srv" 2>/dev/null || fail "the server died after QMP clients went away"
dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none || fail "disk unusable after QMP clients went away"
python3 "$PROJECT/Tests/testbed/qmp-client.py" /run/vduse-export/p.sock '{"execute":"qmp_capabilities"}' >/dev/null || fail "QMP dead"
$X del p
note "QMP clients closing early (probes, unread replies): server alive, disk fine"

# The starter of a server (an interrupted add) is gone when the ready line is written.
truncate -s 32M rd.img
"$X" serve --blockdev "driver=file,node-name=f0,filename=$PWD/rd.img" \
    --export type=vduse-blk,id=rd,node-name=f0,name=rd,writable=on --ready-fd 3 3> >(exit 0) >rd.out 2>rd.err &
rdpid=$!
for _ in $(seq 1 100); do [ -s rd.out ] && break; kill -0 "$rdpid" 2>/dev/null || break; sleep 0.1; done
sleep 0.5
kill -0 "$rdpid" 2>/dev/null || { rc=0; wait "$rdpid" || rc=$?; fail "the server died (exit $rc) writing to a closed ready pipe"; }
SERVER_PID=$rdpid
stop_export rd
note "a closed ready pipe (interrupted add): server keeps serving, exits 0 on SIGTERM"

# --- item 10: two concurrent adds of one image ---
truncate -s 32M same.img
( $X add same.img >add1.out 2>add1.err; echo $? >add1.rc ) &
( $X add same.img >add2.out 2>add2.err; echo $? >add2.rc ) &
wait
[ "$(cat add1.rc) $(cat add2.rc)" = "0 0" ] || fail "concurrent adds: exits $(cat add1.rc) $(cat add2.rc): $(cat add1.err add2.err)"
[ -b "$(cat add1.out)" ] && [ "$(cat add1.out)" = "$(cat add2.out)" ] || fail "concurrent adds printed $(cat add1.out) and $(cat add2.out)"
[ -S /run/vduse-export/same.sock ] || fail "the QMP socket of 'same' is gone"
python3 "$PROJECT/Tests/testbed/qmp-client.py" /run/vduse-export/same.sock '{"execute":"qmp_capabilities"}' >/dev/null || fail "QMP of 'same'"
$X del same
note "two concurrent adds of one image: both exit 0 with $(cat add1.out); socket intact"

# --- also: serve --qmp PATH refuses what is not a socket ---
echo precious > notasocket
rc=0; "$X" serve --blockdev driver=null-co,node-name=n0 --export type=vduse-blk,id=n,node-name=n0,name=nq \
    --qmp "$PWD/notasocket" >/dev/null 2>err.txt || rc=$?
[ "$rc" -ne 0 ] && [ "$(cat notasocket)" = precious ] && grep -q "not a socket" err.txt || fail "serve --qmp FILE: exit $rc, $(cat err.txt), file: $(cat notasocket 2>&1)"
expect_no_disks
note "serve --qmp on a regular file: refused, file kept, nothing left"
