# Issue 15, item 1: servers must not pin host file systems. A host umount flushes and frees the
# device while servers run; a disk mounted in another mount namespace counts as in use for del;
# a server whose own disk is mounted still exits cleanly (del --force, SIGTERM). Also: the
# daemon's working directory is / (it pins nothing).
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
# Exclusive open: EBUSY while any mount (in any namespace) holds the device.
exclusive_open() { python3 -c "import os,sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL))" "$1"; }

# A host file system mounted BEFORE the servers start (a USB stick, a loop-mounted image).
truncate -s 64M hostfs.img
loopdev=$(losetup -f --show hostfs.img)
trap 'losetup -d "$loopdev" 2>/dev/null || true' EXIT
mkfs.ext4 -q "$loopdev"
mkdir -p /mnt/host
mount "$loopdev" /mnt/host

truncate -s 64M web.img
dev=$($X add web.img)
srv=$($X list --json | json '[e["pid"] for e in d if e["name"] == "web"][0]')
truncate -s 32M fg.img
start_export fg --blockdev "driver=file,node-name=f0,filename=$PWD/fg.img" --export type=vduse-blk,id=fg,node-name=f0,name=fg,writable=on
note "two servers running (add: pid $srv; serve: pid $SERVER_PID)"

echo "written while servers run" > /mnt/host/hello.txt
umount /mnt/host
for p in "$srv" "$SERVER_PID"; do
    if grep -q "^$loopdev " "/proc/$p/mounts"; then fail "server $p still has $loopdev mounted after the host umount"; fi
done
exclusive_open "$loopdev" || fail "$loopdev is still busy after umount (a server pins its superblock)"
[ "$(debugfs -R "cat /hello.txt" "$loopdev" 2>/dev/null)" = "written while servers run" ] \
    || fail "the data written before umount is not on the device"
e2fsck -fn "$loopdev" >/dev/null || fail "fsck of the unmounted host file system"
note "host umount with servers running: not pinned, device free (O_EXCL), data flushed, fsck clean"

[ "$(readlink /proc/$srv/cwd)" = / ] || fail "the daemon's working directory is $(readlink /proc/$srv/cwd), not /"
note "the daemon's working directory is /"

# The export's disk mounted in another mount namespace: del must see it.
mkfs.ext4 -q -F "$dev"
mkdir -p /mnt/other
unshare -m --propagation private sh -c "mount $dev /mnt/other && echo mounted > ns.ready && exec sleep 60" &
holder=$!
for _ in $(seq 1 100); do [ -e ns.ready ] && break; sleep 0.1; done
[ -e ns.ready ] || fail "could not mount $dev in a second namespace"
expect_exit 5 "mount namespace of process" -- $X del web
[ -b "$dev" ] || fail "the refused del removed the disk"
kill "$holder"; wait "$holder" 2>/dev/null || true
note "del refuses while the disk is mounted in another mount namespace (exit 5)"

# Own disk mounted on the host: del --force and SIGTERM still end the servers cleanly.
mkdir -p /mnt/own /mnt/fg
mount "$dev" /mnt/own
echo data > /mnt/own/f
timeout 60 $X del --force web || fail "del --force of a server whose own disk is mounted failed or hung ($?)"
umount -l /mnt/own || true
expect_gone web
mkfs.ext4 -q -F "$DEV"
mount "$DEV" /mnt/fg
echo data > /mnt/fg/f
stop_export fg
umount -l /mnt/fg || true
note "servers whose own disk is mounted exit cleanly (del --force; SIGTERM, exit 0)"
