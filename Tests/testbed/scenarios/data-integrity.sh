# Pattern write/read-back, then a file system: mkfs, mount, copy, unmount, fsck, and the same
# data after the image is exported again by a new server.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
IMG=$PWD/disk.img
truncate -s 256M "$IMG"
EXPORT=(--blockdev "driver=file,node-name=file0,filename=$IMG" --blockdev driver=raw,node-name=disk0,file=file0
        --export type=vduse-blk,id=exp0,node-name=disk0,name=integrity0,writable=on)

start_export srv "${EXPORT[@]}"
note "ready: $READY"
[ "$(cat "$(sysblock)/size")" -eq $((256 * 2048)) ] || fail "capacity $(cat "$(sysblock)/size") sectors, expected $((256 * 2048))"

head -c 16M /dev/urandom > pattern
dd if=pattern of="$DEV" bs=1M seek=3 oflag=direct status=none
dd if="$DEV" of=back bs=1M skip=3 count=16 iflag=direct status=none
cmp pattern back || fail "read-back differs from what was written"
cmp pattern <(dd if="$IMG" bs=1M skip=3 count=16 status=none) || fail "image file differs from what was written"
note "16 MiB pattern written and read back through $DEV, image identical"

mkfs.ext4 -q -F "$DEV"
mkdir -p mnt
mount "$DEV" mnt
mkdir mnt/tree
cp -a /usr/lib/os-release /usr/bin/env pattern mnt/tree/
sha256sum mnt/tree/* | sed 's| mnt/| |' > sums
umount mnt
fsck.ext4 -f -n "$DEV" > fsck.log 2>&1 || { cat fsck.log; fail "fsck found errors"; }
note "ext4: mkfs, mount, copy, umount, fsck -f clean"
stop_export integrity0

start_export srv2 "${EXPORT[@]}"
mount "$DEV" mnt
(sha256sum mnt/tree/* | sed 's| mnt/| |') | diff sums - || fail "files differ after re-export"
umount mnt
stop_export integrity0
expect_no_disks
note "files identical after re-export; nothing left behind"
