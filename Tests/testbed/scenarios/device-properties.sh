# What the export's options make the kernel show: read-only, serial, logical block size,
# queue count, capacity.
# timeout: 300
# vm-cpus: 4
source "$PROJECT/Tests/testbed/scenario-lib.sh"
IMG=$PWD/disk.img
truncate -s 100M "$IMG"
NODES=(--blockdev "driver=file,node-name=file0,filename=$IMG" --blockdev driver=raw,node-name=disk0,file=file0)

start_export ro "${NODES[@]}" --export type=vduse-blk,id=exp0,node-name=disk0,name=ro0,serial=SN-ro-0001
[ "$(cat "$(sysblock)/ro")" = 1 ] || fail "read-only export: /sys/block/.../ro is $(cat "$(sysblock)/ro")"
[ "$(cat "$(sysblock)/serial")" = SN-ro-0001 ] || fail "serial is '$(cat "$(sysblock)/serial")'"
[ "$(cat "$(sysblock)/size")" -eq $((100 * 2048)) ] || fail "capacity $(cat "$(sysblock)/size") sectors"
if dd if=/dev/zero of="$DEV" bs=4k count=1 oflag=direct status=none 2>/dev/null; then fail "write to a read-only export succeeded"; fi
dd if="$DEV" of=/dev/null bs=4k count=1 iflag=direct status=none || fail "read from read-only export failed"
note "read-only: ro=1, writes fail, reads work; serial and capacity visible"
stop_export ro0

start_export lbs "${NODES[@]}" --export type=vduse-blk,id=exp0,node-name=disk0,name=lbs0,writable=on,logical-block-size=4096
[ "$(cat "$(sysblock)/queue/logical_block_size")" = 4096 ] || fail "logical_block_size $(cat "$(sysblock)/queue/logical_block_size")"
if dd if=/dev/zero of="$DEV" bs=512 count=1 oflag=direct status=none 2>/dev/null; then fail "512-byte direct write accepted on a 4096-byte device"; fi
dd if=/dev/zero of="$DEV" bs=4096 count=1 oflag=direct status=none || fail "4096-byte write failed"
note "logical-block-size=4096 visible in queue/logical_block_size"
stop_export lbs0

start_export mq "${NODES[@]}" --export type=vduse-blk,id=exp0,node-name=disk0,name=mq0,writable=on,num-queues=4
queues=$(ls "$(sysblock)/mq" | wc -l)
[ "$queues" -eq 4 ] || fail "num-queues=4 but $queues hardware queues under mq/ ($(nproc) CPUs)"
note "num-queues=4 gives 4 queues under mq/"
stop_export mq0
expect_no_disks
