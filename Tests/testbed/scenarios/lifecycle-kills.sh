# Kills at awkward moments of an export's life, and a driver reset under load:
# - killed during add, before the disk is ready: add still prints a usable disk;
# - killed right after block_resize grew the image: the new server gives the disk the new size;
# - killed while `del` tears it down: del still finishes and leaves nothing;
# - virtio_blk unbound and bound again while fio runs: the server survives, the disk comes back.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
pid_of() { $X list --json | json "[e['pid'] for e in d if e['name'] == '$1'][0]"; }
# A server process of ours for NAME (started by a supervisor), newest first.
truncate -s 128M a.img b.img c.img d.img

# 1. kill during `add`: the server is killed as soon as it exists (plus 0-0.09 s), before its
#    disk is ready; the supervisor starts it again, and add still prints a usable disk (exit 0).
server_of() {  # the `serve` process of NAME: the child of its supervisor (found fast: add is quick)
    local sup
    sup=$(pgrep -f "supervise .*name=$1," | head -1 || true)
    [ -n "$sup" ] && pgrep -P "$sup" | head -1 || true
}
early=0
for i in 1 2 3 4 5; do
    truncate -s 64M k$i.img
    rm -f add.rc
    ( $X add k$i.img --name k$i >add.out 2>add.err && echo 0 >add.rc || echo $? >add.rc ) &
    p=
    for _ in $(seq 1 400); do p=$(server_of k$i); [ -n "$p" ] && break; sleep 0.01; done
    [ -n "$p" ] || fail "no server for k$i"
    sleep "0.0$((RANDOM % 10))"
    [ -e add.rc ] || early=$((early + 1))
    kill -KILL "$p"
    wait
    [ "$(cat add.rc)" = 0 ] || { cat add.err; tail -20 /run/vduse-export/k$i.log; fail "add k$i exited $(cat add.rc) after its server was killed"; }
    d=$(cat add.out)
    timeout 30 dd if=/dev/urandom of="$d" bs=64k count=16 oflag=direct status=none || fail "disk of k$i unusable after the kill"
    $X del k$i
done
[ "$early" -ge 3 ] || fail "only $early of 5 kills landed before add returned"
note "5 kills during add ($early before it had returned): each add printed a usable disk"

dev=$($X add a.img --name a0)
[ -b "$dev" ] || fail "add printed '$dev'"

# 2. kill right after a resize grew the image (the crash between ftruncate and the config update,
#    made exact by growing the file by hand), then a real block_resize with a kill right after it.
sectors() { cat "/sys/block/$(basename "$1")/size"; }
before=$(sectors "$dev")
truncate -s 192M a.img
old=$(pid_of a0); kill -KILL "$old"
for _ in $(seq 1 100); do [ "$(sectors "$dev")" = $((192 * 2048)) ] && break; sleep 0.05; done
[ "$(sectors "$dev")" = $((192 * 2048)) ] || { tail -20 /run/vduse-export/a0.log; dmesg | tail -5; fail "disk has $(sectors "$dev") sectors after the takeover, image has $((192 * 2048))"; }
note "image grown, server killed: the new server gave the disk the new size ($before -> $(sectors "$dev") sectors)"
for _ in $(seq 1 100); do p=$(pid_of a0); [ "$p" != "$old" ] && kill -0 "$p" 2>/dev/null && break; sleep 0.05; done
python3 "$PROJECT/Tests/testbed/qmp-client.py" /run/vduse-export/a0.sock '{"execute":"qmp_capabilities"}' \
    '{"execute":"block_resize","arguments":{"node-name":"a0","size":268435456}}' >resize.out &
sleep 0.05; kill -KILL "$(pid_of a0)" 2>/dev/null || true; wait || true
sleep 1.5
img=$(( $(stat -c %s a.img) / 512 ))
for _ in $(seq 1 100); do [ "$(sectors "$dev")" = "$img" ] && break; sleep 0.05; done
[ "$(sectors "$dev")" = "$img" ] || fail "after a kill during block_resize: disk $(sectors "$dev") sectors, image $img"
dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct status=none || fail "disk unusable after the resize kill"
note "kill during block_resize: disk and image agree ($img sectors)"

# 3. kill during del.
dev_b=$($X add b.img --name b0)
srv=$(pid_of b0)
( $X del b0 >del.out 2>del.err; echo $? >del.rc ) &
sleep 0.15
kill -KILL "$srv" 2>/dev/null || true
wait
[ "$(cat del.rc)" = 0 ] || fail "del exited $(cat del.rc) after its server was killed: $(cat del.err)"
[ ! -e /dev/vduse/b0 ] && [ ! -e /sys/bus/vdpa/devices/b0 ] && [ ! -e /run/vduse-export/b0.inflight ] \
    || fail "del after a kill left $(ls /dev/vduse /run/vduse-export)"
note "server killed during del: del finished (exit 0), nothing left"

# 4. Driver unbind/rebind under fio: the reset arrives with requests in flight.
dev_c=$($X add c.img --name c0 --num-queues 2)
srv=$(pid_of c0)
virtio=$(basename "$(ls -d /sys/bus/vdpa/devices/c0/virtio*)")
fio --name=reset --filename="$dev_c" --ioengine=io_uring --direct=1 --rw=randrw --bs=4k --iodepth=32 \
    --time_based --runtime=4 --output=reset.log >/dev/null 2>&1 &
FIO=$!
sleep 1.5
echo "$virtio" >/sys/bus/virtio/drivers/virtio_blk/unbind
sleep 0.5
echo "$virtio" >/sys/bus/virtio/drivers/virtio_blk/bind
wait "$FIO" || true
kill -0 "$srv" || fail "the server died in the reset (log: $(tail -5 /run/vduse-export/c0.log))"
for _ in $(seq 1 100); do
    new=$(ls /sys/bus/vdpa/devices/c0/$virtio/block 2>/dev/null || true); [ -n "$new" ] && break; sleep 0.05
done
[ -n "$new" ] || fail "no disk after rebinding virtio_blk"
head -c 1M /dev/urandom >pattern
dd if=pattern of="/dev/$new" bs=1M oflag=direct status=none && dd if="/dev/$new" of=back bs=1M count=1 iflag=direct status=none
cmp pattern back || fail "disk /dev/$new after the rebind does not read back what was written"
note "virtio_blk unbound and rebound under fio: server $srv alive, /dev/$new reads back"

$X del a0; $X del c0
for d in /sys/block/vd*; do [ -e "$d" ] && { ls -l "$d" "$d/device" 2>&1; cat "$d/size" "$d/inflight" 2>&1; ls /sys/bus/vdpa/devices /dev/vduse; dmesg | tail -15; }; done
expect_no_disks
