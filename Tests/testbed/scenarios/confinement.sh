# The serving process keeps only what it needs once its disks exist: every thread shows
# NoNewPrivs 1, Seccomp 2 and the capability sets reduced to CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
# and CAP_NET_ADMIN (0x1006; without CAP_NET_ADMIN, 0x6, when the caller binds: --no-bind), and
# confined it still does its whole job: fio verify, QMP (run-time blockdev-add and
# block-export-add, which creates and binds a second device; block_resize), stats, a restart
# (hand-over to a fresh server, confined again), del. VDUSE_EXPORT_CONFINE=0 leaves a server
# unconfined. The server loads the kernel modules before it drops its capabilities. (A system call outside the allow-list is tested in crash-kinds.)
# timeout: 240
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
pid_of() { $X list --json | json "[e['pid'] for e in d if e['name'] == '$1'][0]"; }
# qmp SOCKET COMMAND ARGUMENTS-JSON : fails on an error reply
qmp() {
    local out
    out=$(python3 "$PROJECT/Tests/testbed/qmp-client.py" "$1" '{"execute":"qmp_capabilities"}' \
        "{\"execute\":\"$2\",\"arguments\":$3}") || return 1
    ! grep -q '"error"' <<<"$out" || { echo "$out" >&2; return 1; }
}

truncate -s 64M a.img b.img
# The server loads the modules itself before it drops CAP_SYS_MODULE: start with them unloaded.
# (The guest's modules live in the test bed's tree: for `add`, /sbin/modprobe, a link to kmod, is
# a wrapper that runs a copy of kmod as modprobe with -d TREE; bound over kmod, undone at once.)
rmmod virtio_vdpa vduse || fail "cannot unload vduse, virtio_vdpa"
[ ! -e /dev/vduse/control ] || fail "vduse still loaded"
cp /bin/kmod kmod-copy
printf '#!/bin/bash\nexec -a modprobe %s -d %s "$@"\n' "$PWD/kmod-copy" "$PROJECT/.testbed/kroot" >modprobe-wrapper
chmod +x modprobe-wrapper
mount --bind "$PWD/modprobe-wrapper" /bin/kmod || fail "cannot bind the modprobe wrapper"
rc=0; dev=$($X add a.img --name conf --num-queues 2) || rc=$?
umount /bin/kmod
[ "$rc" -eq 0 ] || fail "add failed (exit $rc)"
grep -q '^vduse ' /proc/modules || fail "add did not load vduse"
pid=$(pid_of conf)
expect_confined "$pid" 1006
note "add: server $pid confined in all $CONFINED_TASKS threads (NoNewPrivs 1, Seccomp 2, caps 0x1006)"

fio --name=v --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 --size=8M \
    --verify=crc32c --verify_fatal=1 --output=fio.log || { cat fio.log; fail "fio verify on the confined server"; }
grep -q 'err= 0' fio.log || { cat fio.log; fail "fio errors"; }
$X resize conf 96M >/dev/null || fail "resize while confined"
[ "$(blockdev --getsize64 "$dev")" = $((96 << 20)) ] || fail "resize: $(blockdev --getsize64 "$dev")"
$X stats conf >/dev/null || fail "stats while confined"
note "confined: fio verify clean, resize to 96 MiB, stats"

sock=$($X list --json | json "[e['socket'] for e in d if e['name'] == 'conf'][0]")
qmp "$sock" blockdev-add '{"driver":"file","node-name":"fb","filename":"'"$PWD"'/b.img"}' >/dev/null \
    || fail "run-time blockdev-add while confined"
qmp "$sock" block-export-add '{"type":"vduse-blk","id":"conf2","node-name":"fb","name":"conf2","writable":true}' >/dev/null \
    || fail "run-time block-export-add while confined"
for _ in $(seq 100); do ls /sys/bus/vdpa/devices/conf2/virtio*/block/ >/dev/null 2>&1 && break; sleep 0.1; done
dev2=/dev/$(ls /sys/bus/vdpa/devices/conf2/virtio*/block/) || fail "no disk for the run-time export"
dd if=/dev/urandom of=b.data bs=1M count=4 status=none
dd if=b.data of="$dev2" bs=1M oflag=direct status=none || fail "write to the run-time export"
cmp <(head -c 4M b.img) b.data || fail "run-time export: image differs"
qmp "$sock" block-export-del '{"id":"conf2"}' >/dev/null || fail "block-export-del while confined"
for _ in $(seq 100); do [ -e /sys/bus/vdpa/devices/conf2 ] || break; sleep 0.1; done
expect_gone conf2
expect_confined "$pid" 1006
note "confined: QMP blockdev-add + block-export-add bound a second disk, written and deleted; $CONFINED_TASKS threads still confined"

$X restart conf >/dev/null || fail "restart"
new=$(pid_of conf)
[ "$new" != "$pid" ] || fail "restart: same server $pid"
expect_confined "$new" 1006
note "restart: server $new confined again"
$X del conf || fail "del of a confined server"
expect_gone conf

VDUSE_EXPORT_CONFINE=0 $X add a.img --name open >/dev/null || fail "add with VDUSE_EXPORT_CONFINE=0"
grep -q '^Seccomp:[[:space:]]*0$' /proc/"$(pid_of open)"/status || fail "VDUSE_EXPORT_CONFINE=0: seccomp on"
$X del open || fail "del of the unconfined server"

ln -s "$X" qemu-storage-daemon
./qemu-storage-daemon --blockdev driver=file,node-name=f0,filename="$PWD/a.img" \
    --export type=vduse-blk,id=q0,node-name=f0,name=qsd0,writable=on --daemonize --pidfile "$PWD/qsd.pid" \
    || fail "qemu-storage-daemon personality"
expect_confined "$(cat qsd.pid)" 6
note "--no-bind (qemu-storage-daemon personality): confined without CAP_NET_ADMIN (0x6)"
kill "$(cat qsd.pid)"
for _ in $(seq 100); do [ -e /dev/vduse/qsd0 ] || break; sleep 0.1; done
expect_no_disks
