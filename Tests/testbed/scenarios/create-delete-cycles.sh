# 20 create/delete cycles in a row; each leaves no device behind, the last leaves nothing at all.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
IMG=$PWD/disk.img
truncate -s 32M "$IMG"
for i in $(seq 1 20); do
    start_export cyc --blockdev "driver=file,node-name=file0,filename=$IMG" --blockdev driver=raw,node-name=disk0,file=file0 \
        --export "type=vduse-blk,id=exp0,node-name=disk0,name=cycle0,writable=on,num-queues=2"
    echo "cycle $i" | dd of="$DEV" bs=512 conv=sync oflag=direct status=none
    stop_export cycle0
    [ ! -e "$DEV" ] || fail "cycle $i: $DEV still exists"
done
expect_no_disks
[ "$(head -c 8 "$IMG")" = "cycle 20" ] || fail "last cycle's write not in the image"
lsmod | grep -q '^vduse ' || fail "vduse module gone"
note "20 cycles: no device left, last write persisted"
