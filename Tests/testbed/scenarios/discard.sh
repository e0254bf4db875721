# blkdiscard punches holes in the image; blkdiscard -z writes zeroes; both read back as zeros.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
IMG=$PWD/disk.img
truncate -s 64M "$IMG"
start_export srv --blockdev "driver=file,node-name=file0,filename=$IMG" --blockdev driver=raw,node-name=disk0,file=file0 \
    --export type=vduse-blk,id=exp0,node-name=disk0,name=discard0,writable=on
dd if=/dev/urandom of="$DEV" bs=1M count=64 oflag=direct status=none
sync
full=$(stat -c %b "$IMG")
[ "$(cat "$(sysblock)/queue/discard_max_bytes")" -gt 0 ] || fail "discard not advertised"
blkdiscard -o 0 -l 32M "$DEV"
after=$(stat -c %b "$IMG")
note "image blocks: $full before discard, $after after"
[ "$after" -lt "$full" ] || fail "discard did not punch holes in the image"
cmp -n $((32 << 20)) "$DEV" /dev/zero || fail "discarded range does not read back as zeros"
blkdiscard -z -o 32M -l 16M "$DEV"
dd if="$DEV" bs=1M skip=32 count=16 iflag=direct status=none | cmp - <(head -c 16M /dev/zero) \
    || fail "write-zeroes range does not read back as zeros"
dd if="$DEV" bs=1M skip=48 count=16 iflag=direct status=none | cmp -s - <(head -c 16M /dev/zero) \
    && fail "data outside the zeroed ranges was lost"
note "discard and write-zeroes read back as zeros; data beyond them intact"
stop_export discard0
