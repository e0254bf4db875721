# NBD backend against real servers on loopback: nbdkit (memory, file) over a unix socket and TCP
# on 127.0.0.1, qemu-nbd serving a qcow2. fio verify through /dev/vdX, nbdcopy of the export
# compared with what was written, write-zeroes with and without unmap (flags in nbdkit's log),
# discard/write-zeroes seen in the server's file, the server killed and restarted during fio
# (requests retried, fio clean), over TCP a multi-threaded nbdkit stopped with SIGTERM and started
# again on its port during fio, then stopped for good (fio ends with I/O errors), a server gone for good (I/O errors within reconnect-delay, then
# del works), a server stopped with its socket open (dropped after x-request-timeout; resumed:
# requests resent, fio clean; left stopped: I/O errors, del works), and refusals before any
# device exists (unreachable, refused, read-only, TLS required, malformed).
# timeout: 600
# vm-cpus: 2
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
for c in nbdkit nbdcopy nbdinfo qemu-nbd fio; do command -v $c >/dev/null || fail "$c missing: scripts/install-deps testbed"; done
# The guest's init leaves loopback down.
ip link set lo up
# Under TCG the first TCP connections of a boot make the kernel patch its own code; a thread
# racing that patch hit an int3 Oops once. One connection alone first, then a phase without TCP.
timeout 60 python3 -c 'import socket; l=socket.socket(); l.bind(("127.0.0.1",0)); l.listen(1); c=socket.create_connection(l.getsockname()); a,_=l.accept(); c.sendall(b"x"); a.recv(1)'
head -c 16M /dev/urandom >pattern.bin
T0=$SECONDS
took() { echo "$((SECONDS - T0)) s"; }

# srv NAME URI CMD...: a server in the foreground, in the background; ready when nbdinfo connects.
srv() {
    local name=$1 uri=$2; shift 2
    "$@" >"$name.log" 2>&1 &
    echo $! >"$name.pid"
    for _ in $(seq 1 100); do timeout 10 nbdinfo --can connect "$uri" 2>/dev/null && return 0; sleep 0.2; done
    cat "$name.log"; fail "$name: server not up"
}
stopsrv() { local p; p=$(cat "$1.pid"); kill "${2:--TERM}" "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
# A request that never completes leaves fio in D state, deaf to signals: wait for it in the
# background and, if it hangs, show where the requests are instead of waiting for the timeout.
wait_fio() {  # wait_fio PID LOG SECONDS
    local pid=$1 log=$2
    for _ in $(seq 1 "$3"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        for b in /sys/block/vd*; do echo "$b inflight: $(cat "$b/inflight")"; done
        for f in /run/vduse-export/*.log *.err; do [ -f "$f" ] && { echo "---- $f"; tail -20 "$f"; }; done
        fail "fio still running after $3 s"
    fi
    wait "$pid"
}
fio_verify() {  # fio_verify DEV LOG [extra fio options]: 4k random writes verified, then fio's own check
    local dev=$1 log=$2; shift 2
    fio --name=v --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 \
        --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 --output="$log" "$@" &
    wait_fio $! "$log" 240 || { cat "$log"; fail "fio verify on $dev failed"; }
    grep -q "err= 0" "$log" || { cat "$log"; fail "fio reported errors"; }
}

# 1. nbdkit memory over a unix socket, through add's URI: fio verify, then bytes written through the
#    device come back from the server with nbdcopy.
M="nbd+unix:///?socket=$PWD/mem.sock"
srv mem "$M" nbdkit -f --log=stderr --unix "$PWD/mem.sock" --filter=log memory size=64M logfile="$PWD/mem-ops.log"
dev=$(timeout 150 $X add "$M" --name nbdmem --num-queues 2) || { cat /run/vduse-export/nbdmem.log; fail "add $M"; }

[ "$(blockdev --getsize64 "$dev")" = $((64 << 20)) ] || fail "size of $dev"
$X list | grep -E "^nbdmem .* running .*nbd\+unix:///\?socket=$PWD/mem.sock" >/dev/null || fail "list: $($X list)"
fio_verify "$dev" mem-fio.log
dd if=pattern.bin of="$dev" bs=1M seek=32 oflag=direct conv=fsync status=none || fail "dd to $dev"
nbdcopy "$M" export.bin || fail "nbdcopy"
cmp -n $((16 << 20)) -i $((32 << 20)):0 export.bin pattern.bin || fail "nbdcopy of the export differs from what was written"
# Write-zeroes that may unmap (punch hole) and that may not (zero range): the guest's permission
# reaches the server as the absence or presence of NO_HOLE (trim=1 / trim=0 in nbdkit's log).
# The server offers fast zero (fast_zero=1) and it is never sent (fast=0): see docs/options.md.
fallocate -p -o $((32 << 20)) -l $((1 << 20)) "$dev" || fail "punch hole (write-zeroes, may unmap)"
fallocate -z -o $((34 << 20)) -l $((1 << 20)) "$dev" || fail "zero range (write-zeroes, no unmap)"
nbdcopy "$M" export.bin || fail "nbdcopy"
cmp -n $((1 << 20)) -i $((32 << 20)):0 export.bin /dev/zero || fail "punched range not zero on the server"
cmp -n $((1 << 20)) -i $((34 << 20)):0 export.bin /dev/zero || fail "zeroed range not zero on the server"
cmp -n $((1 << 20)) -i $((33 << 20)):$((1 << 20)) export.bin pattern.bin || fail "bytes between the zeroed ranges changed"
grep -q "Connect .*fast_zero=1" mem-ops.log || fail "nbdkit memory does not offer fast zero: $(grep Connect mem-ops.log)"
grep -Eq "Zero id=[0-9]+ offset=0x2000000 .*trim=1 .*fast=0" mem-ops.log || fail "punch hole: $(grep Zero mem-ops.log)"
grep -Eq "Zero id=[0-9]+ offset=0x2200000 .*trim=0 .*fast=0" mem-ops.log || fail "zero range: $(grep Zero mem-ops.log)"
! grep -q "Zero .*fast=1" mem-ops.log || fail "fast zero sent: $(grep 'fast=1' mem-ops.log)"
rm -f export.bin mem-ops.log
$X del nbdmem || fail "del nbdmem"
expect_gone nbdmem
note "nbdkit memory, unix socket, 2 queues (multi-conn): fio verify; nbdcopy shows the written bytes; write-zeroes with unmap (trim=1) and without (trim=0, NO_HOLE), never fast ($(took))"

# 2. nbdkit file over TCP on 127.0.0.1 (serve, JSON-free keyval options): write-zeroes and discard
#    reach the server's file.
truncate -s 64M file.img
T="nbd://127.0.0.1:10810/"
srv file "$T" nbdkit -f --log=stderr --ipaddr 127.0.0.1 --port 10810 file file="$PWD/file.img"
start_export tcp --blockdev driver=nbd,node-name=n0,server.type=inet,server.host=127.0.0.1,server.port=10810 \
    --export type=vduse-blk,id=e0,node-name=n0,name=nbdtcp,writable=on
[ "$(cat "$(sysblock)/queue/discard_max_bytes")" != 0 ] || fail "discard not offered (nbdkit file can trim)"
fio_verify "$DEV" tcp-fio.log
dd if=pattern.bin of="$DEV" bs=1M seek=40 oflag=direct conv=fsync status=none
cmp -n $((16 << 20)) -i $((40 << 20)):0 file.img pattern.bin || fail "file.img does not hold the bytes written"
blkdiscard -z -o $((40 << 20)) -l $((4 << 20)) "$DEV" || fail "write-zeroes (blkdiscard -z)"
cmp -n $((4 << 20)) -i $((40 << 20)):0 file.img /dev/zero || fail "write-zeroes not in the server's file"
before=$(stat -c %b file.img)
blkdiscard -o $((44 << 20)) -l $((8 << 20)) "$DEV" || fail "discard"
after=$(stat -c %b file.img)
[ "$after" -lt "$before" ] || fail "discard did not free blocks of the server's file ($before -> $after)"
cmp -n $((8 << 20)) -i $((44 << 20)):0 file.img /dev/zero || fail "discarded range does not read as zeros"
stop_export nbdtcp
stopsrv file
note "nbdkit file, TCP: fio verify; write-zeroes and discard seen in the file ($before -> $after blocks) ($(took))"

# 3. qemu-nbd serving a qcow2 over a unix socket: fio verify, then the image matches the device.
qemu-img create -q -f qcow2 img.qcow2 64M
Q="nbd+unix:///disk?socket=$PWD/qemu.sock"
srv qnbd "$Q" qemu-nbd --persistent --shared=4 --format=qcow2 --export-name=disk --socket="$PWD/qemu.sock" "$PWD/img.qcow2"
dev=$($X add "$Q") || fail "add $Q"
$X list | grep -q "^disk " || fail "the default name is the export's: $($X list)"
fio_verify "$dev" qnbd-fio.log --size=8M
dd if="$dev" of=device.raw bs=1M iflag=direct status=none
$X del disk || fail "del disk"
expect_exit 4 '' -- $X add "nbd+unix:///nosuch?socket=$PWD/qemu.sock" --name nosuch
note "missing export: $(cat err.txt)"
expect_gone nosuch
stopsrv qnbd
qemu-img check -q img.qcow2 || fail "qemu-img check"
qemu-img compare -q -f qcow2 -F raw img.qcow2 device.raw || fail "the qcow2 differs from the device"
note "qemu-nbd + qcow2: fio verify; image checked and equal to the device ($(took))"

# 4. Refusals before any device exists (exit 4, nothing left).
expect_exit 4 "Failed to connect to '$PWD/none.sock'" -- $X add "nbd+unix:///?socket=$PWD/none.sock" --name gone
note "unreachable: $(cat err.txt)"
expect_exit 4 "Connection refused" -- $X add "nbd://127.0.0.1:10899/" --name gone
srv ro "nbd+unix:///?socket=$PWD/ro.sock" nbdkit -f -r --unix "$PWD/ro.sock" memory size=8M
expect_exit 4 "read-only" -- $X add "nbd+unix:///?socket=$PWD/ro.sock" --name gone
note "read-only server: $(cat err.txt)"
expect_gone gone
dev=$($X add "nbd+unix:///?socket=$PWD/ro.sock" --name rodisk --read-only) || fail "add --read-only"
[ "$(cat /sys/block/"$(basename "$dev")"/ro)" = 1 ] || fail "not read-only"
$X del rodisk
stopsrv ro
# A server that requires TLS refuses our plaintext handshake (up once its socket exists: a connect
# queued before it accepts is still served).
echo "alice:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >tls.psk
nbdkit -f --unix "$PWD/tls.sock" --tls=require --tls-psk="$PWD/tls.psk" memory size=8M >tls.log 2>&1 &
echo $! >tls.pid
for _ in $(seq 1 100); do [ -S tls.sock ] && break; sleep 0.1; done
[ -S tls.sock ] || { cat tls.log; fail "nbdkit --tls=require not up"; }
rc=0; $X add "nbd+unix:///?socket=$PWD/tls.sock" --name gone 2>err.txt || rc=$?
[ "$rc" -eq 4 ] && grep -q "server requires TLS encryption first" err.txt && grep -q "does not support NBD over TLS" err.txt \
    || fail "TLS required: exit $rc, $(cat err.txt)"
note "TLS required: $(cat err.txt)"
stopsrv tls
expect_gone gone
expect_exit 1 '' -- $X add "nbd://127.0.0.1:10809/x?y=z" --name gone
[ -z "$($X list)" ] || fail "left in list: $($X list)"
expect_no_disks
note "unreachable, refused, read-only, TLS required, malformed: refused, nothing left ($(took))"

# 5. The server is killed and restarted during fio: requests wait and are sent again; fio verifies.
truncate -s 64M restart.img
R="nbd+unix:///?socket=$PWD/r.sock"
srv r "$R" nbdkit -f --log=stderr --unix "$PWD/r.sock" file file="$PWD/restart.img"
start_export rs --blockdev driver=nbd,node-name=n0,server.type=unix,server.path="$PWD/r.sock",reconnect-delay=60 \
    --export type=vduse-blk,id=e0,node-name=n0,name=nbdrs,writable=on
fio --name=r --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=24M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --output=rs-fio.log &
fiopid=$!
sleep 3
stopsrv r -KILL
rm -f r.sock
sleep 3
srv r "$R" nbdkit -f --log=stderr --unix "$PWD/r.sock" file file="$PWD/restart.img"
sleep 2
stopsrv r -KILL
rm -f r.sock
sleep 1
srv r "$R" nbdkit -f --log=stderr --unix "$PWD/r.sock" file file="$PWD/restart.img"
rc=0; wait_fio $fiopid rs-fio.log 300 || rc=$?
[ "$rc" -eq 0 ] && grep -q "err= 0" rs-fio.log || { cat rs-fio.log; cat rs.err; fail "fio across two server restarts: exit $rc"; }
grep -c "reconnected" rs.err >/dev/null || fail "no reconnect logged: $(cat rs.err)"
note "server killed twice during fio: $(grep -c reconnected rs.err) reconnects, fio verify clean ($(took))"
grep "nbd:" rs.err | sed 's/^/   /'
stop_export nbdrs
stopsrv r

# 5b. TCP on a fixed port, nbdkit as it runs by default (multi-threaded, so multi-conn: one
#     connection per queue), stopped with SIGTERM and started again on the same port under fio
#     verify (issue 25). nbdkit on SIGTERM answers NBD_ESHUTDOWN and waits for every client to
#     leave, the idle connection too, before it frees the port; then stopped for good: fio ends
#     with I/O errors within reconnect-delay and the export is removed.
truncate -s 64M tcp2.img
P=10811
T2="nbd://127.0.0.1:$P/"
tcpsrv() { srv t2 "$T2" nbdkit -f --log=stderr --ipaddr 127.0.0.1 --port $P file file="$PWD/tcp2.img"; }
tcpsrv
start_export t2 --blockdev driver=nbd,node-name=n0,server.type=inet,server.host=127.0.0.1,server.port=$P,reconnect-delay=8 \
    --export type=vduse-blk,id=e0,node-name=n0,name=nbdt2,writable=on,num-queues=2
fio --name=t --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=24M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --output=t2-fio.log &
fiopid=$!
sleep 3
s=$SECONDS
stopsrv t2 -TERM
left=$((SECONDS - s))
[ "$left" -le 5 ] || fail "nbdkit took $left s to exit after SIGTERM (a connection of ours kept it?)"
tcpsrv
rc=0; wait_fio $fiopid t2-fio.log 240 || rc=$?
[ "$rc" -eq 0 ] && grep -q "err= 0" t2-fio.log || { cat t2-fio.log t2.err; fail "fio across a TCP server restart on its port: exit $rc"; }
grep -q "shutting down" t2.err || fail "the server's shutdown was not noticed: $(cat t2.err)"
note "TCP, multi-threaded nbdkit, SIGTERM + restart on port $P during fio: nbdkit left within $left s, fio verify clean ($(took))"
fio --name=t --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=24M \
    --time_based --runtime=120 --output=t2-gone.log &
fiopid=$!
sleep 2
s=$SECONDS
stopsrv t2 -TERM
rc=0; wait_fio $fiopid t2-gone.log 60 || rc=$?
t=$((SECONDS - s))
[ "$rc" -ne 0 ] && grep -q "Input/output error" t2-gone.log || { cat t2-gone.log; fail "fio against a server gone for good: exit $rc"; }
[ "$t" -le 25 ] || fail "fio ended $t s after the server (reconnect-delay=8)"
stop_export nbdt2
note "TCP server stopped for good during fio: fio ended with I/O errors after $t s (reconnect-delay=8), export removed ($(took))"

# 6. A server gone for good: requests fail with an I/O error within reconnect-delay, and del works.
srv g "nbd+unix:///?socket=$PWD/g.sock" nbdkit -f --log=stderr --unix "$PWD/g.sock" memory size=16M
start_export gone --record --blockdev driver=nbd,node-name=n0,server.type=unix,server.path="$PWD/g.sock",reconnect-delay=5 \
    --export type=vduse-blk,id=e0,node-name=n0,name=nbdgone,writable=on
stopsrv g -KILL
s=$SECONDS
rc=0; dd if=/dev/urandom of="$DEV" bs=4k count=1 oflag=direct status=none 2>dd.err || rc=$?
t=$((SECONDS - s))
[ "$rc" -ne 0 ] && grep -q "Input/output error" dd.err || fail "write to a dead server: exit $rc, $(cat dd.err)"
[ "$t" -ge 4 ] && [ "$t" -le 20 ] || fail "the write failed after $t s (reconnect-delay=5)"
rc=0; dd if="$DEV" of=/dev/null bs=4k count=1 iflag=direct status=none 2>dd.err || rc=$?
[ "$rc" -ne 0 ] || fail "a read after the deadline succeeded"
$X del nbdgone || fail "del of an export whose server is gone"
rc=0; wait "$SERVER_PID" || rc=$?
expect_gone nbdgone
expect_no_disks
note "server gone: I/O error after $t s (reconnect-delay=5), del removed the export ($(took))"

# 7. A server stopped with its socket open (SIGSTOP: nothing closes, nothing answers). With
#    x-request-timeout=2 the silent connection is dropped and reopened; resumed within
#    reconnect-delay=10, the requests are resent and fio verifies; left stopped, a write fails
#    with an I/O error after about timeout + delay, and del works while the server is still stopped.
truncate -s 64M hang.img
H="nbd+unix:///?socket=$PWD/h.sock"
# One worker thread: nbdkit 1.32 with several aborts (connections.c: raw_send_socket: Assertion
# `sock >= 0') when, resumed, a second thread replies on the old connection the first one closed
# after its reply hit EPIPE (we dropped that connection).
srv h "$H" nbdkit -f --log=stderr --threads=1 --unix "$PWD/h.sock" file file="$PWD/hang.img"
start_export hang --record --blockdev driver=nbd,node-name=n0,server.type=unix,server.path="$PWD/h.sock",reconnect-delay=10,x-request-timeout=2 \
    --export type=vduse-blk,id=e0,node-name=n0,name=nbdhang,writable=on
fio --name=h --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=24M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --output=hang-fio.log &
fiopid=$!
sleep 3
kill -STOP "$(cat h.pid)"
sleep 5
kill -CONT "$(cat h.pid)"
rc=0; wait_fio $fiopid hang-fio.log 240 || rc=$?
[ "$rc" -eq 0 ] && grep -q "err= 0" hang-fio.log || {
    cat hang-fio.log hang.err h.log; ps -o pid,stat,cmd -p "$(cat h.pid)"; fail "fio across a 5 s stop: exit $rc"; }
grep -q "no answer from" hang.err && grep -q "reconnected" hang.err || fail "no timeout and reconnect logged: $(cat hang.err)"
note "server stopped 5 s during fio: dropped after x-request-timeout=2, resent, fio verify clean ($(took))"
grep "nbd:" hang.err | sed 's/^/   /'
kill -STOP "$(cat h.pid)"
s=$SECONDS
rc=0; dd if=/dev/urandom of="$DEV" bs=4k count=1 oflag=direct status=none 2>dd.err || rc=$?
t=$((SECONDS - s))
[ "$rc" -ne 0 ] && grep -q "Input/output error" dd.err || fail "write to a stopped server: exit $rc, $(cat dd.err)"
[ "$t" -ge 10 ] && [ "$t" -le 30 ] || fail "the write failed after $t s (x-request-timeout=2, reconnect-delay=10)"
timeout 60 $X del nbdhang || fail "del of an export whose server is stopped"
rc=0; wait "$SERVER_PID" || rc=$?
expect_gone nbdhang
stopsrv h -KILL
expect_no_disks
note "server left stopped: I/O error after $t s (x-request-timeout=2 + reconnect-delay=10), del removed the export ($(took))"
