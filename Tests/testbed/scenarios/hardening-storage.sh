# Issue 15, items 4-9: an image on a file system without fallocate (vfat) offers no discard and
# zeroes by writing (no I/O errors in the guest); a dead export whose image is gone, and an
# export whose record is damaged, can still be deleted; add of a block device; names up to 255
# bytes; a FIFO is refused at once. Also: del refuses a name that is a path.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
modprobe -d "$PROJECT/.testbed/kroot" -a vfat nls_cp437 nls_ascii nls_utf8 || fail "cannot load vfat"
loops=()
trap 'for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done' EXIT

# --- item 4: vfat has no fallocate ---
truncate -s 128M fat.img
fatdev=$(losetup -f --show fat.img); loops+=("$fatdev")
mkfs.vfat -F 32 "$fatdev" >/dev/null
mkdir -p /mnt/fat
mount "$fatdev" /mnt/fat
head -c 32M /dev/zero > /mnt/fat/disk.img
dev=$($X add /mnt/fat/disk.img --name fat)
sys=/sys/block/$(basename "$dev")
[ "$(cat "$sys/queue/discard_max_bytes")" -eq 0 ] || fail "discard offered on vfat (discard_max_bytes $(cat "$sys/queue/discard_max_bytes"))"
[ "$(cat "$sys/queue/write_zeroes_max_bytes")" -gt 0 ] || fail "write-zeroes not offered"
dmesg -C
head -c 8M /dev/urandom | dd of="$dev" bs=1M oflag=direct status=none
blkdiscard -z -o 1M -l 4M "$dev" || fail "write-zeroes failed on vfat"
cmp <(dd if=/mnt/fat/disk.img bs=1M skip=1 count=4 status=none) <(head -c 4M /dev/zero) || fail "write-zeroes did not zero the image"
cmp -s <(dd if=/mnt/fat/disk.img bs=1M skip=5 count=1 status=none) <(head -c 1M /dev/zero) && fail "data beyond the zeroed range was lost"
mkfs.ext4 -q -F "$dev"
mkdir -p /mnt/onfat
mount -o discard "$dev" /mnt/onfat
head -c 4M /dev/urandom > /mnt/onfat/f; sync; rm /mnt/onfat/f; sync; fstrim /mnt/onfat 2>/dev/null || true
umount /mnt/onfat
! dmesg | grep -q "I/O error" || fail "I/O errors in the guest: $(dmesg | grep 'I/O error' | head -3)"
$X del fat
umount /mnt/fat
note "image on vfat: no discard offered, write-zeroes written as zeros, ext4 with -o discard: no I/O errors"

# --- item 5: a dead export whose image is gone ---
truncate -s 32M gone.img
$X add gone.img >/dev/null
pid=$($X list --json | json '[e["pid"] for e in d if e["name"] == "gone"][0]')
kill -9 "$pid"; sleep 0.5
rm gone.img
expect_exit 0 '' -- $X del gone
expect_gone gone
note "dead export, image deleted: del exit 0, device gone"

# --- item 6: a damaged record ---
truncate -s 32M dmg.img
dev=$($X add dmg.img)
echo '{"name": "dmg", "dev' > /run/vduse-export/dmg.json
expect_exit 3 "damaged" -- $X add dmg.img
$X list | grep -E "^dmg .* damaged" >/dev/null || fail "list does not show dmg as damaged: $($X list)"
expect_exit 0 '' -- $X del dmg
expect_gone dmg
[ ! -e /run/vduse-export/dmg.json ] || fail "the damaged record is still there"
[ -z "$($X list)" ] || fail "list after del: $($X list)"
note "damaged record: add says so (exit 3), list shows 'damaged', del removes the export and its server"

# --- item 7: add of a block device ---
truncate -s 48M backing.img
blk=$(losetup -f --show backing.img); loops+=("$blk")
dev=$($X add "$blk" --name blk) || fail "add of a block device"
[ "$(cat /sys/block/$(basename "$dev")/size)" -eq $((48 * 2048)) ] || fail "block device export size"
head -c 1M /dev/urandom > pattern
dd if=pattern of="$dev" bs=1M oflag=direct status=none
cmp pattern <(dd if="$blk" bs=1M count=1 iflag=direct status=none) || fail "data did not reach the block device"
$X del blk
note "add /dev/loopN: exported (host_device), data reaches the device"

# --- item 8: a 255-byte name ---
long=$(printf 'n%.0s' $(seq 1 255))
truncate -s 32M long.img
dev=$($X add long.img --name "$long") || fail "add with a 255-byte name"
[ -b "$dev" ] || fail "add with a 255-byte name printed '$dev'"
[ "$($X list --json | json '[e["name"] for e in d][0]')" = "$long" ] || fail "list with a 255-byte name"
$X del "$long" || fail "del of a 255-byte name"
expect_gone "$long"
note "255-byte name: add, list, del"

# --- item 9: a FIFO ---
mkfifo fifo
expect_exit 1 "to be a regular file" -- timeout 20 $X add fifo --read-only
rc=0; timeout 20 $X check --blockdev "driver=file,node-name=f,filename=$PWD/fifo,read-only=on" 2>err.txt >/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "check of a FIFO: exit $rc, $(cat err.txt)"
note "FIFO: add --read-only and check refuse it at once (exit 1)"

# --- also: del ../x ---
echo '{}' > /run/x.json
rc=0; $X del ../x 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && [ -e /run/x.json ] || fail "del ../x: exit $rc, $(cat err.txt)"
expect_no_disks
note "del ../x: refused (exit 1), nothing outside the state directory touched"
