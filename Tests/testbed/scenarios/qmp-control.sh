# The QMP control socket: a scripted client adds a second export at run time, queries, resizes
# it (the disk's size changes), deletes it, gets errors for bad commands, and quits.
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
QMP="python3 $PROJECT/Tests/testbed/qmp-client.py $PWD/qmp.sock"
truncate -s 64M a.img
truncate -s 32M b.img
start_export srv --qmp "$PWD/qmp.sock" \
    --blockdev "driver=file,node-name=fa,filename=$PWD/a.img" --blockdev driver=raw,node-name=na,file=fa \
    --blockdev "driver=file,node-name=fb,filename=$PWD/b.img" --blockdev driver=raw,node-name=nb,file=fb \
    --export type=vduse-blk,id=ea,node-name=na,name=qmpa,writable=on

q() { $QMP '{"execute":"qmp_capabilities"}' "$@" | tail -n +2; }
expect() { echo "$1" | grep -qF -- "$2" || fail "expected '$2' in: $1"; }

out=$($QMP '{"execute":"query-block-exports"}')
expect "$out" "Expecting capabilities negotiation with 'qmp_capabilities'"

out=$(q '{"execute":"block-export-add","arguments":{"type":"vduse-blk","id":"eb","node-name":"nb","name":"qmpb","writable":true,"serial":"QMP-B"},"id":7}')
expect "$out" '"return": {}'
expect "$out" '"id": 7'
disk=$(basename "$(ls -d /sys/bus/vdpa/devices/qmpb/virtio*/block/vd*)")
[ "$(cat /sys/block/$disk/size)" -eq $((32 * 2048)) ] || fail "new export has $(cat /sys/block/$disk/size) sectors"
[ "$(cat /sys/block/$disk/serial)" = QMP-B ] || fail "serial of the added export"
dd if=/dev/urandom of="/dev/$disk" bs=1M count=4 oflag=direct status=none
note "block-export-add made /dev/$disk"

out=$(q '{"execute":"query-block-exports"}')
expect "$out" '{"return": [{"id": "eb", "node-name": "nb", "shutting-down": false, "type": "vduse-blk"}, {"id": "ea", "node-name": "na", "shutting-down": false, "type": "vduse-blk"}]}'

out=$(q '{"execute":"block_resize","arguments":{"node-name":"nb","size":67108864}}')
expect "$out" '"return": {}'
for _ in $(seq 1 50); do [ "$(cat /sys/block/$disk/size)" -eq $((64 * 2048)) ] && break; sleep 0.1; done
[ "$(cat /sys/block/$disk/size)" -eq $((64 * 2048)) ] || fail "after block_resize the disk has $(cat /sys/block/$disk/size) sectors"
[ "$(stat -c %s b.img)" -eq 67108864 ] || fail "image not resized"
dd if=/dev/zero of="/dev/$disk" bs=1M seek=60 count=4 oflag=direct status=none || fail "cannot write the grown part"
note "block_resize: guest sees 64 MiB"

out=$(q '{"execute":"block-export-add","arguments":{"type":"vduse-blk","id":"ea","node-name":"nb","name":"x"}}')
expect "$out" "Block export id 'ea' is already in use"
out=$(q '{"execute":"block-export-add","arguments":{"type":"vduse-blk","id":"ec","node-name":"nb","name":"y","queue-size":3}}')
expect "$out" '"desc": "queue-size is invalid"'
out=$(q '{"execute":"block-export-add","arguments":{"type":"vduse-blk","id":"ec","node-name":"nope","name":"y"}}')
expect "$out" "Cannot find device='' nor node-name='nope'"
out=$(q '{"execute":"block-export-del","arguments":{"id":"zz"}}')
expect "$out" "Export 'zz' is not found"
out=$(q '{"execute":"no-such-command"}')
expect "$out" '"class": "CommandNotFound"'
out=$(q 'not json')
expect "$out" '"class": "GenericError"'
note "bad commands get QMP errors"

out=$(q '{"execute":"block-export-del","arguments":{"id":"eb"}}')
expect "$out" '"return": {}'
expect "$out" '"event": "BLOCK_EXPORT_DELETED"'
expect_gone qmpb
[ ! -e "/sys/block/$disk" ] || fail "/dev/$disk still exists after block-export-del"
note "block-export-del removed it"

# Many add/del cycles in one server: no fd or thread is left behind (io_uring's own kernel
# workers, iou-wrk-*, come and go by themselves and are not counted).
fds() { ls /proc/$SERVER_PID/fd | wc -l; }
threads() { for t in /proc/$SERVER_PID/task/*; do cat "$t/comm"; done | grep -vc '^iou-' || true; }
before_fds=$(fds); before_threads=$(threads)
for i in $(seq 1 10); do
    out=$(q '{"execute":"block-export-add","arguments":{"type":"vduse-blk","id":"cyc","node-name":"nb","name":"qmpcyc","writable":true,"num-queues":2}}' \
            '{"execute":"block-export-del","arguments":{"id":"cyc"}}')
    [ "$(echo "$out" | grep -c '"return": {}')" -eq 2 ] || fail "cycle $i: $out"
done
expect_gone qmpcyc
[ "$(fds)" -eq "$before_fds" ] || fail "fds: $before_fds before 10 add/del cycles, $(fds) after: $(ls -l /proc/$SERVER_PID/fd)"
[ "$(threads)" -eq "$before_threads" ] || fail "threads: $before_threads before, $(threads) after"
note "10 QMP add/del cycles: $before_fds fds and $before_threads threads before and after"

out=$(q '{"execute":"quit"}')
expect "$out" '"return": {}'
rc=0; wait "$SERVER_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "server exited $rc after quit"
expect_gone qmpa
expect_no_disks
note "quit: server exited 0, nothing left"
