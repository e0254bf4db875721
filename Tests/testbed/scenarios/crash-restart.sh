# The disk outlives its server: fio writes with crc32c verification over 4 queues while the server
# is killed with SIGKILL again and again and started anew with the same options (what systemd's
# Restart= does); the new server takes the device over from the reconnect log and resubmits what
# was in flight. fio must see no error, verification must pass, and the kernel must log no I/O
# error for the disk.
# timeout: 900
# vm-cpus: 2
source "$PROJECT/Tests/testbed/scenario-lib.sh"
IMG=$PWD/disk.img
truncate -s 256M "$IMG"
ARGS=(--blockdev "driver=file,node-name=file0,filename=$IMG" --blockdev driver=raw,node-name=disk0,file=file0
      --object iothread,id=io0
      --export "type=vduse-blk,id=exp0,node-name=disk0,name=crash0,writable=on,num-queues=4,iothread=io0")
start_export srv "${ARGS[@]}"
disk=$DEV
dmesg -C

# fio passes, one after another, until told to stop; each must verify clean.
rm -f stop-fio fio-failed
(
    pass=0
    while [ ! -e stop-fio ]; do
        pass=$((pass + 1))
        fio --name=crash --filename="$disk" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=32 \
            --numjobs=1 --size=48M --offset=$(( (pass % 4) * 48 ))M --verify=crc32c --verify_fatal=1 --do_verify=1 \
            --output="fio-$pass.log" || { echo "$pass" >>fio-failed; break; }
        grep -q "err= 0" "fio-$pass.log" || { echo "$pass" >>fio-failed; break; }
    done
    echo "$pass" >fio-passes
) &
FIO=$!

kills=${CRASH_KILLS:-10}
for i in $(seq 1 "$kills"); do
    sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 1.2 }')"
    [ -e fio-failed ] && break
    kill -KILL "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    start_export "srv$i" "${ARGS[@]}"
    [ "$DEV" = "$disk" ] || fail "after restart $i the disk is $DEV, not $disk"
done
touch stop-fio
wait "$FIO" || true
if [ -e fio-failed ]; then
    p=$(head -1 fio-failed); cat "fio-$p.log"; dmesg | tail -20; fail "fio pass $p failed (after up to $i kills)"
fi
passes=$(cat fio-passes)
if dmesg | grep -iE "I/O error|blk_update_request|Buffer I/O" | grep -q "$(basename "$disk")"; then
    dmesg | tail -30; fail "the kernel logged I/O errors for $disk"
fi
resubmitted=$(cat srv*.err | grep -o '[0-9]* request(s) in flight resubmitted' | awk '{ n += $1 } END { print n + 0 }')
takeovers=$(cat srv*.err | grep -c 'took over /dev/vduse/crash0' || true)
[ "$takeovers" -eq "$i" ] || fail "$i restarts but $takeovers takeovers logged"
note "$i x SIGKILL under fio (4 queues, QD32, crc32c): $passes fio passes, $resubmitted in-flight requests resubmitted, 0 errors, verify clean, no I/O error in dmesg"
stop_export crash0
expect_no_disks
[ ! -e /run/vduse-export/crash0.inflight ] || fail "the reconnect log was left behind after a clean stop"
note "clean stop after the restarts: device, vdpa device and log gone"
