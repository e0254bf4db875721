# A block device as the backend (host_device), opened with O_DIRECT (cache.direct=on): size from
# BLKGETSIZE64, data round trip, discard and write-zeroes through BLKDISCARD/BLKZEROOUT.
# (Debian 6.12.118 cannot pin VDUSE bounce pages for O_DIRECT I/O on a block device: EFAULT, for
# QEMU's server too; the file backend then stages direct transfers in aligned buffers of its own.)
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
truncate -s 96M backing.img
loopdev=$(losetup -f --show backing.img)
trap 'losetup -d "$loopdev" 2>/dev/null || true' EXIT
start_export srv --blockdev "driver=host_device,node-name=dev0,filename=$loopdev,cache.direct=on" \
    --export type=vduse-blk,id=e0,node-name=dev0,name=blkdev0,writable=on,num-queues=2
[ "$(cat "$(sysblock)/size")" -eq $((96 * 2048)) ] || fail "capacity $(cat "$(sysblock)/size") sectors, want $((96 * 2048))"
flags=
for f in /proc/$SERVER_PID/fd/*; do
    if [[ "$(readlink "$f")" == *"$loopdev" ]]; then flags=$(awk '/flags/ {print $2}' "/proc/$SERVER_PID/fdinfo/$(basename "$f")"); fi
done
[ -n "$flags" ] && (( (8#$flags & 8#40000) != 0 )) || fail "the server's fd on $loopdev is not O_DIRECT (flags $flags)"
head -c 8M /dev/urandom > pattern
dd if=pattern of="$DEV" bs=1M seek=10 oflag=direct status=none
dd if="$DEV" of=back bs=1M skip=10 count=8 iflag=direct status=none
cmp pattern back || fail "read-back differs"
cmp pattern <(dd if="$loopdev" bs=1M skip=10 count=8 iflag=direct status=none) || fail "the block device does not hold the data"
fio --name=v --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16 --size=32M \
    --offset=32M --verify=crc32c --verify_fatal=1 --output=fio.log || { cat fio.log; fail "fio verify"; }
blkdiscard -z -o 10M -l 8M "$DEV"
cmp <(dd if="$loopdev" bs=1M skip=10 count=8 iflag=direct status=none) <(head -c 8M /dev/zero) || fail "write-zeroes did not reach the device"
note "host_device + O_DIRECT (flags $flags): capacity, round trip, fio verify, write-zeroes"
stop_export blkdev0
expect_no_disks
