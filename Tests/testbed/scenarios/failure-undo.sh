# Failures leave nothing behind: a kernel-side failure half-way through creation (the device is
# claimed by vhost_vdpa, so no /dev/vdX appears) is undone; an option error in a later export
# stops the server before any kernel resource exists.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
truncate -s 32M a.img b.img

# 1. vhost_vdpa instead of virtio_vdpa: VDUSE device created and bound, but no disk.
modprobe -d "$PROJECT/.testbed/kroot" -r virtio_vdpa
modprobe -d "$PROJECT/.testbed/kroot" vhost_vdpa
rc=0
$X serve --blockdev "driver=file,node-name=f0,filename=$PWD/a.img" \
    --export type=vduse-blk,id=e0,node-name=f0,name=undo0,writable=on >out.txt 2>err.txt || rc=$?
cat err.txt
[ "$rc" -eq 4 ] || fail "exit $rc, want 4"
grep -q "vhost_vdpa" err.txt || fail "the message does not say what claimed the device"
[ ! -s out.txt ] || fail "a ready line was printed: $(cat out.txt)"
expect_gone undo0
[ -z "$(ls /dev | grep '^vhost-vdpa' || true)" ] || fail "vhost-vdpa device left: $(ls /dev | grep vhost-vdpa)"
modprobe -d "$PROJECT/.testbed/kroot" -r vhost_vdpa
modprobe -d "$PROJECT/.testbed/kroot" virtio_vdpa
note "no disk appeared (vhost_vdpa): exit 4, the VDUSE and vdpa devices were removed"

# 2. The second export's options are bad: nothing at all is created.
rc=0
$X serve --blockdev "driver=file,node-name=f0,filename=$PWD/a.img" --blockdev "driver=file,node-name=f1,filename=$PWD/b.img" \
    --export type=vduse-blk,id=e0,node-name=f0,name=undo0 --export type=vduse-blk,id=e1,node-name=f1,name=undo1,queue-size=100 \
    >out.txt 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && [ "$(cat err.txt)" = "vduse-export: queue-size is invalid" ] || fail "exit $rc: $(cat err.txt)"
expect_gone undo0
expect_gone undo1
expect_no_disks
note "an invalid second export: exit 1 before any device was created"

# 3. The name is held by a running server: the second server refuses and leaves the first intact.
start_export srv --blockdev "driver=file,node-name=f0,filename=$PWD/a.img" --export type=vduse-blk,id=e0,node-name=f0,name=held0,writable=on
first=$DEV
rc=0
$X serve --blockdev "driver=file,node-name=f0,filename=$PWD/b.img" --export type=vduse-blk,id=e0,node-name=f0,name=held0 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -qx "vduse-export: failed to create vduse device: name 'held0' is already in use" err.txt || fail "exit $rc: $(cat err.txt)"
dd if=/dev/zero of="$first" bs=4k count=1 oflag=direct status=none || fail "the first server's disk broke"
stop_export held0
expect_no_disks
note "a name in use: exit 1, the running export untouched"

# 4. An image the engine cannot open when the export is made (a qcow2 whose backing file is
#    gone; the option checks only open the file): exit 1, as for any image that is not what it
#    claims, with the server's reason passed back through the readiness pipe; nothing left.
qemu-img create -q -f qcow2 -u -b "$PWD/gone.raw" -F raw orphan.qcow2 16M
rc=0
$X add "$PWD/orphan.qcow2" --name undo2 >out.txt 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -q "Could not open '$PWD/orphan.qcow2'" err.txt || fail "orphan qcow2: exit $rc, want 1: $(cat err.txt)"
[ ! -s out.txt ] || fail "a disk was printed: $(cat out.txt)"
[ ! -e /run/vduse-export/undo2.json ] || fail "a record was left behind"
expect_gone undo2
expect_no_disks
note "an image that cannot be opened: exit 1 ($(head -1 err.txt | cut -c1-100)), nothing created"
