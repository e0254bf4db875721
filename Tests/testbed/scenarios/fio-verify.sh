# fio with crc32c verification: random 4k writes at QD32 and 1M sequential, with 1 and 4 queues.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
IMG=$PWD/disk.img
truncate -s 192M "$IMG"
for queues in 1 4; do
    start_export srv --blockdev "driver=file,node-name=file0,filename=$IMG" \
        --blockdev driver=raw,node-name=disk0,file=file0 --object iothread,id=io0 \
        --export "type=vduse-blk,id=exp0,node-name=disk0,name=fio$queues,writable=on,num-queues=$queues,iothread=io0"
    fio --name=rand4k --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=32 \
        --size=64M --verify=crc32c --verify_fatal=1 --do_verify=1 --numjobs=1 --output=rand.log \
        || { cat rand.log; fail "4k randwrite verify failed with $queues queue(s)"; }
    fio --name=seq1m --filename="$DEV" --ioengine=io_uring --direct=1 --rw=write --bs=1M --iodepth=8 \
        --offset=64M --size=128M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=seq.log \
        || { cat seq.log; fail "1M sequential verify failed with $queues queue(s)"; }
    grep -q "err= 0" rand.log && grep -q "err= 0" seq.log || fail "fio reported errors"
    note "$queues queue(s): $(grep -o 'IOPS=[^,]*' rand.log | head -1) 4k randwrite+verify, $(grep -o 'BW=[^ ]*' seq.log | head -1) 1M write+verify"
    stop_export "fio$queues"
done
expect_no_disks
