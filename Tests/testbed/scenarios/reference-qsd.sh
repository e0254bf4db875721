# The kernel data path works with a known-good VDUSE server (QEMU's qemu-storage-daemon), without
# any of the project's code: vduse device -> vdpa dev add -> virtio_vdpa -> virtio_blk -> /dev/vdX,
# data written through the block device reads back the same and lands in the backing image.
# When a vduse-export scenario fails and this one passes, look at our code first.
# timeout: 180
set -euo pipefail

name=ref0
img=$PWD/disk.img
truncate -s 256M "$img"

qemu-storage-daemon \
  --blockdev "driver=file,node-name=file0,filename=$img,aio=io_uring" \
  --blockdev driver=raw,node-name=disk0,file=file0 \
  --object iothread,id=io0 \
  --export "type=vduse-blk,id=exp0,node-name=disk0,name=$name,num-queues=1,writable=on,iothread=io0" \
  >qsd.log 2>&1 &
qsd=$!
cleanup() {
  vdpa dev del "$name" 2>/dev/null || true
  kill "$qsd" 2>/dev/null || true
  wait "$qsd" 2>/dev/null || true   # QSD 7.2 may abort on SIGTERM after its device is gone; not our concern
  sed 's/^/qsd: /' qsd.log
}
trap cleanup EXIT

# The VDUSE device exists once QSD has created it; then attach it to the vDPA bus.
for _ in $(seq 100); do [[ -e /dev/vduse/$name ]] && break; kill -0 "$qsd" || exit 1; sleep 0.2; done
[[ -e /dev/vduse/$name ]] || { echo "reference-qsd: /dev/vduse/$name did not appear" >&2; exit 1; }
vdpa dev add name "$name" mgmtdev vduse

blk=
for _ in $(seq 100); do
  blk=$(ls "/sys/bus/vdpa/devices/$name"/virtio*/block/ 2>/dev/null | head -n 1) && [[ -n $blk && -b /dev/$blk ]] && break
  sleep 0.2
done
[[ -n $blk && -b /dev/$blk ]] || { echo "reference-qsd: no block device under /sys/bus/vdpa/devices/$name" >&2; exit 1; }
dev=/dev/$blk
echo "reference-qsd: $name is $dev, $(blockdev --getsize64 "$dev") bytes"
[[ $(blockdev --getsize64 "$dev") == $((256 << 20)) ]] || { echo "reference-qsd: wrong size" >&2; exit 1; }

# 8 MiB of random data at offset 16 MiB, through the block device with O_DIRECT.
head -c 8M /dev/urandom >pattern
dd if=pattern of="$dev" bs=1M seek=16 oflag=direct status=none
dd if="$dev" of=back bs=1M skip=16 count=8 iflag=direct status=none
cmp pattern back
cmp pattern <(dd if="$img" bs=1M skip=16 count=8 status=none)   # it reached the backing file
echo "reference-qsd: 8 MiB read back identical through $dev and in the image"

fio --name=verify --filename="$dev" --direct=1 --ioengine=io_uring --rw=randwrite --bs=4k \
    --iodepth=16 --size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output="$RESULTS/fio-verify.txt"
echo "reference-qsd: fio crc32c verify of 32 MiB random 4k writes passed"
