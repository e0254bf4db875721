# Our binary as a drop-in for qemu-storage-daemon: started through a link of that name, the
# command lines of real tooling work unchanged, the caller binds the device with vdpa itself.
# Each sequence runs first against QEMU's own qemu-storage-daemon, to prove the script right.
#  1. Vitastor CSI's sequence with a file node: --daemonize --pidfile --blockdev JSON
#     --export vduse-blk,...,num-queues=16,queue-size=128,writable=true; vdpa -j dev add; the
#     disk found under /sys/bus/vdpa/devices/NAME/virtio*/block/; fio verify; vdpa dev del;
#     kill the pid from the pidfile; nothing left.
#  2. QEMU's documented form: qcow2 over file, --chardev socket + --monitor answering QMP.
#  3. A second daemon on a held pidfile, a missing file, a bad option: exit 1, QEMU's message,
#     nothing left.
#  4. vduse-export serve --daemonize --pidfile, which binds the device itself.
# timeout: 300
set -euo pipefail
. "$PROJECT/Tests/testbed/scenario-lib.sh"
[[ -x $VDUSE_EXPORT ]] || fail "no binary at $VDUSE_EXPORT (swift build on the host first)"
ln -s "$VDUSE_EXPORT" "$PWD/qemu-storage-daemon"
ours=$PWD/qemu-storage-daemon
real=/usr/bin/qemu-storage-daemon

# disk_of NAME : the block device the vdpa device NAME became (waits for it).
disk_of() {
    local blk=
    for _ in $(seq 100); do
        blk=$(ls "/sys/bus/vdpa/devices/$1"/virtio*/block/ 2>/dev/null | head -n 1) && [[ -n $blk && -b /dev/$blk ]] && break
        sleep 0.1
    done
    [[ -n $blk && -b /dev/$blk ]] || fail "no block device under /sys/bus/vdpa/devices/$1"
    echo "/dev/$blk"
}

verify() {
    fio --name=verify --filename="$1" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k --iodepth=16 \
        --size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$RESULTS/fio-$2.txt" \
        || fail "fio verify on $1 ($2)"
}

# wait_gone PID : a process that is not our child has exited.
wait_gone() {
    for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    fail "pid $1 still running 15 s after SIGTERM"
}

# csi PROGRAM NAME : Vitastor CSI's steps (csi/src/nodeserver.go), a file node instead of vitastor.
csi() {
    local prog=$1 name=$2 img=$PWD/$2.img pidf=$PWD/$2.pid
    truncate -s 64M "$img"
    "$prog" --daemonize --pidfile "$pidf" \
        --blockdev "{\"node-name\":\"disk1\",\"driver\":\"file\",\"filename\":\"$img\"}" \
        --export "vduse-blk,id=$name,node-name=disk1,name=$name,num-queues=16,queue-size=128,writable=true" \
        || fail "$prog --daemonize exited $?"
    [[ -s $pidf ]] || fail "$prog: no pid file once the parent exited"
    local pid; pid=$(<"$pidf")
    kill -0 "$pid" || fail "$prog: pid $pid from the pid file is not running"
    [[ -e /dev/vduse/$name ]] || fail "$prog: /dev/vduse/$name does not exist when the parent exited"
    [[ ! -e /sys/bus/vdpa/devices/$name ]] || fail "$prog bound $name itself: the caller's vdpa dev add would fail"
    # A second daemon on the same pid file: refused, nothing of it left.
    local rc=0
    "$prog" --daemonize --pidfile "$pidf" --blockdev driver=null-co,node-name=n0 \
        --export "vduse-blk,id=other,node-name=n0,name=other-$name" 2>lock.err || rc=$?
    [[ $rc -ne 0 ]] || fail "$prog: a second daemon on a held pid file started"
    grep -q "cannot create PID file: Cannot lock pid file: Resource temporarily unavailable" lock.err \
        || fail "$prog: held pid file: $(cat lock.err)"
    # QEMU's daemon takes the pid file after creating its exports and exits without removing
    # them; ours takes it first.
    if [[ $prog == "$real" ]]; then
        note "$prog: held pid file refused; /dev/vduse/other-$name $([[ -e /dev/vduse/other-$name ]] && echo left behind || echo gone)"
    else
        expect_gone "other-$name"
    fi
    [[ $(<"$pidf") == "$pid" ]] || fail "$prog: the refused daemon changed the pid file"
    vdpa -j dev add name "$name" mgmtdev vduse
    local dev; dev=$(disk_of "$name")
    note "$prog: $name is $dev (pid $pid)"
    verify "$dev" "csi-$(basename "$prog")-$name"
    vdpa dev del "$name"
    kill "$pid"
    wait_gone "$pid"
    [[ ! -e $pidf ]] || fail "$prog: pid file left behind"
    expect_gone "$name"
}

# documented PROGRAM NAME : QEMU's documented form (docs/tools/qemu-storage-daemon.rst): qcow2
# over file, a QMP monitor on a socket chardev, in the foreground; vdpa dev add/del by hand.
documented() {
    local prog=$1 name=$2
    qemu-img create -q -f qcow2 "$PWD/$name.qcow2" 64M
    "$prog" --blockdev "driver=file,node-name=file,filename=$PWD/$name.qcow2" \
        --blockdev driver=qcow2,node-name=qcow2,file=file \
        --export "type=vduse-blk,id=export,node-name=qcow2,name=$name,writable=on" \
        --chardev "socket,path=$PWD/$name.qmp,server=on,wait=off,id=char1" --monitor chardev=char1 \
        >"$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do [[ -e /dev/vduse/$name && -S $name.qmp ]] && break; kill -0 "$pid" || { cat "$name.log"; fail "$prog exited"; }; sleep 0.1; done
    [[ -e /dev/vduse/$name && -S $name.qmp ]] || fail "$prog: no device or QMP socket"
    local reply
    reply=$(python3 "$PROJECT/Tests/testbed/qmp-client.py" "$PWD/$name.qmp" '{"execute":"qmp_capabilities"}' \
        '{"execute":"query-block-exports"}' | tail -n 1)
    python3 -c 'import json,sys; r=json.loads(sys.argv[1])["return"]; assert [e["id"] for e in r]==["export"] and r[0]["type"]=="vduse-blk", r' "$reply" \
        || fail "$prog: query-block-exports answered $reply"
    vdpa dev add name "$name" mgmtdev vduse
    local dev; dev=$(disk_of "$name")
    note "$prog: documented example, $name is $dev; QMP: $reply"
    verify "$dev" "doc-$(basename "$prog")-$name"
    vdpa dev del "$name"
    kill "$pid"
    wait "$pid" || true   # QSD 7.2 may abort on SIGTERM after its device is gone (docs/testbed.md)
    [[ $prog == "$real" ]] || expect_gone "$name"
}

# refused PROGRAM : --daemonize that cannot start exits non-zero with QEMU's message, leaves nothing.
refused() {
    local prog=$1 rc
    for case in "filename=$PWD/nosuch.img|Could not open '$PWD/nosuch.img': No such file or directory|" \
                "filename=$PWD/ok.img|num-queues must be greater than 0|,num-queues=0"; do
        IFS='|' read -r file message extra <<<"$case"
        truncate -s 16M ok.img
        rc=0
        "$prog" --daemonize --pidfile "$PWD/bad.pid" --blockdev "driver=file,node-name=f,$file" \
            --export "vduse-blk,id=bad,node-name=f,name=bad0$extra" 2>bad.err || rc=$?
        [[ $rc -ne 0 ]] || fail "$prog: --daemonize with '$file$extra' exited 0"
        grep -qF "$message" bad.err || fail "$prog: expected '$message', got: $(cat bad.err)"
        [[ ! -e bad.pid ]] || fail "$prog: pid file left after a failed start"
        expect_gone bad0
        note "$prog: refused (exit $rc): $(cat bad.err)"
    done
}

for prog in "$real" "$ours"; do
    csi "$prog" "csi$([[ $prog == "$real" ]] && echo q || echo v)"
    documented "$prog" "doc$([[ $prog == "$real" ]] && echo q || echo v)"
    refused "$prog"
done

note "vduse-export serve --daemonize --pidfile: binds the device itself"
truncate -s 64M serve.img
out=$("$VDUSE_EXPORT" serve --daemonize --pidfile "$PWD/serve.pid" \
    --blockdev "driver=file,node-name=f,filename=$PWD/serve.img" \
    --export vduse-blk,id=s0,node-name=f,name=serve0,writable=on)
read -r id vname dev <<<"$out"
[[ $id == s0 && $vname == serve0 && -b $dev ]] || fail "serve --daemonize printed '$out'"
[[ -e /sys/bus/vdpa/devices/serve0 ]] || fail "serve did not bind serve0"
[[ $dev == "$(disk_of serve0)" ]] || fail "serve printed $dev"
verify "$dev" serve
pid=$(<serve.pid)
kill "$pid"
wait_gone "$pid"
[[ ! -e serve.pid ]] || fail "serve: pid file left behind"
expect_gone serve0
left=$(ls /sys/block | grep '^vd' || true)
[[ -z $left ]] || fail "disks left behind: $left"
note "all passed"
