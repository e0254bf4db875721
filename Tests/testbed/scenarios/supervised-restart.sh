# add's supervisor and the restart verb: a server killed with SIGKILL is started again and takes
# its device over (files on a mounted ext4 intact, fsck clean); `restart` hands a disk under fio
# verification to a new server process 10 times with no error; the supervisor's own death takes no
# disk down; `add` of an export whose server is gone takes the device over (same disk, exit 0);
# a device whose configuration differs from the request is refused, not adopted.
# timeout: 900
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
pid_of() { $X list --json | json "[e['pid'] for e in d if e['name'] == '$1'][0]"; }
restarts_of() { $X list --json | json "[e.get('restarts') or 0 for e in d if e['name'] == '$1'][0]"; }
# wait_new_server NAME OLDPID: a running server other than OLDPID within 5 s.
wait_new_server() {
    for _ in $(seq 1 100); do
        local p; p=$(pid_of "$1")
        if [ "$p" != "$2" ] && kill -0 "$p" 2>/dev/null && [ "$($X list --json | json "[e['state'] for e in d if e['name'] == '$1'][0]")" = running ]; then
            echo "$p"; return 0
        fi
        sleep 0.05
    done
    fail "no new server for $1 within 5 s (log: $(tail -5 /run/vduse-export/$1.log))"
}
truncate -s 256M fs.img fio.img
dmesg -C

# 1. ext4 on a supervised export; the server killed three times.
dev=$($X add fs.img --name fs0 --num-queues 2)
mkfs.ext4 -q -F "$dev"; mkdir -p mnt; mount "$dev" mnt
for i in 1 2 3; do head -c 4M /dev/urandom >"mnt/file$i"; done
sync
( cd mnt && sha256sum file* ) >sums
for k in 1 2 3; do
    old=$(pid_of fs0)
    t0=$(date +%s%N)
    kill -KILL "$old"
    new=$(wait_new_server fs0 "$old")
    t1=$(date +%s%N)
    head -c 1M /dev/urandom >"mnt/after$k"; sync
    echo 3 >/proc/sys/vm/drop_caches
    ( cd mnt && sha256sum -c --quiet ../sums ) || fail "files changed after kill $k"
    note "kill -9 $k: server $old -> $new in $(( (t1 - t0) / 1000000 )) ms, files intact"
done
[ "$(restarts_of fs0)" = 3 ] || fail "list shows $(restarts_of fs0) restarts, want 3"
$X list | grep -E "^fs0 +$dev +running +[0-9]+ +3 " >/dev/null || fail "list table: $($X list)"
umount mnt
fsck.ext4 -f -n "$dev" >fsck.log 2>&1 || { cat fsck.log; fail "fsck after the kills"; }
note "fsck -f clean after 3 kills; list shows 3 restarts"

# 2. restart (the live upgrade path) 10 times under fio verification.
fdev=$($X add fio.img --name fio0 --num-queues 2)
rm -f fio.ok
( fio --name=upgrade --filename="$fdev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=32 \
      --size=192M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=fio.log && touch fio.ok ) &
FIO=$!
for i in $(seq 1 10); do
    sleep 0.3
    out=$($X restart fio0) || fail "restart $i failed"
    [ "$out" = "$fdev" ] || fail "restart $i printed '$out'"
done
wait "$FIO" || true
[ -e fio.ok ] && grep -q "err= 0" fio.log || { cat fio.log; fail "fio under 10 restarts"; }
[ "$(restarts_of fio0)" = 10 ] || fail "fio0 shows $(restarts_of fio0) restarts, want 10"
note "10 x restart under fio randwrite+crc32c verify: 0 errors"

# 3. The supervisor killed: the server and its disk stay.
srv=$(pid_of fio0)
sup=$(ps -o ppid= -p "$srv" | tr -d ' ')
[ "$(tr '\0' ' ' </proc/$sup/cmdline | awk '{print $2}')" = supervise ] || fail "server's parent is not the supervisor"
kill -KILL "$sup"; sleep 0.3
kill -0 "$srv" || fail "the server died with its supervisor"
dd if="$fdev" of=/dev/null bs=1M count=8 iflag=direct status=none || fail "disk unusable after the supervisor died"
note "supervisor killed: server $srv and $fdev still serve"

# 4. add of an export whose server is gone (no supervisor either): takes the device over.
kill -KILL "$srv"; sleep 0.3
$X list | grep -E "^fio0 .* dead " >/dev/null || fail "list does not show fio0 dead: $($X list)"
# 5. ... but not with another configuration.
rc=0; $X add fio.img --name fio0 --num-queues 4 2>err.txt || rc=$?
[ "$rc" -ne 0 ] || fail "add with another queue count adopted the device"
grep -q "exists with another configuration" err.txt || fail "unexpected message: $(cat err.txt)"
[ -e /dev/vduse/fio0 ] || fail "the refused add removed the device"
note "another configuration refused (exit $rc): $(cat err.txt)"
again=$($X add fio.img --name fio0 --num-queues 2) || fail "add of the dead export failed"
[ "$again" = "$fdev" ] || fail "add printed $again, want $fdev"
dd if="$fdev" of=/dev/null bs=1M count=8 iflag=direct status=none || fail "disk unusable after the takeover"
note "add of the dead export: same disk $again, exit 0"

if dmesg | grep -iE "I/O error|Buffer I/O" | grep -qE "vd[a-z]"; then dmesg | tail -20; fail "I/O errors in dmesg"; fi
$X del fs0; $X del fio0
expect_no_disks
ls /run/vduse-export | grep -q inflight && fail "reconnect logs left: $(ls /run/vduse-export)"
note "del of both: nothing left"
