# Crash safety of live jobs (issue 21), and cancelling the CLI verbs. One supervised disk (`add`),
# fio (random writes, crc32c verify, 2 jobs) running on it through everything. The server
# SIGKILLs itself at exact points (the test-only switch VDUSE_EXPORT_TEST_CRASH: SIGUSR1 arms a
# job point), the verb fails (exit 4, not 0 or 130), the supervisor's new server serves what the
# record names:
# - snapshot killed just before the switch is recorded -> the old image; just after -> the overlay;
# - commit killed as the job starts, mid-copy, just before and just after the switch is
#   recorded -> the overlay three times, then the base (the overlay kept);
# - mirror, the same four points -> the source three times (the target the verb created removed:
#   never served half-copied), then the target (the source kept);
# - a plain kill -9 once a mirror is under way -> whichever the record names; a target not named
#   is gone.
# Then `mirror` and `commit` interrupted by SIGINT and by SIGTERM while the job is held mid-copy
# (the stall point): exit 130, the disk stays where it was, a created target is removed, the
# server has no job left (query-jobs), fio keeps running. At the end: fio verify clean, and with
# I/O stopped the disk equals the image its record names (qemu-img compare).
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img missing: scripts/install-deps testbed"
X=$VDUSE_EXPORT
export VDUSE_EXPORT_OVERLAY_DIR=$PWD/overlays
crash_points_enable
qmp() { python3 "$PROJECT/Tests/testbed/qmp-client.py" "/run/vduse-export/$1.sock" '{"execute":"qmp_capabilities"}' "$2" | tail -1; }
trap 'cp /run/vduse-export/*.log "$RESULTS/" 2>/dev/null || true' EXIT

# fio_start NAME DEV: rounds of fio (random writes then crc32c verify, 2 jobs of 4 MiB at 0 and 8 MiB) until
# fio_stop NAME; a failing round stops the loop and fio_stop fails.
fio_start() {
    rm -f "stop.$1" "fio.$1.failed"
    ( i=0
      while [ ! -e "stop.$1" ]; do
          i=$((i + 1))
          fio --name="$1" --filename="$2" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=4 --numjobs=2 \
              --size=4M --offset_increment=8M --verify=crc32c --verify_fatal=1 --do_verify=1 --output="fio.$1.$i.log" \
              || { echo "$i" >"fio.$1.failed"; exit 1; }
      done
      echo "$i" >"fio.$1.rounds" ) &
    eval "fio_$1=$!"
}
fio_stop() {
    touch "stop.$1"
    local p; eval "p=\$fio_$1"
    wait "$p" || true
    [ ! -e "fio.$1.failed" ] || { cat "fio.$1.$(cat "fio.$1.failed").log"; fail "fio verify failed in round $(cat "fio.$1.failed") on $1"; }
    ! grep -L "err= 0" fio."$1".*.log | grep -q . || fail "fio errors: $(grep -L 'err= 0' fio."$1".*.log)"
    FIO_ROUNDS=$(cat "fio.$1.rounds")
}

truncate -s 32M m.raw
dev_m=$($X add m.raw --name m)
dd if=/dev/urandom of="$dev_m" bs=1M seek=16 count=16 oflag=direct status=none   # data for the mirrors to copy
fio_start m "$dev_m"
step "disk m ($dev_m) added, fio running"

# --- snapshot
crash m before-switch "$PWD/m.raw" snapshot m "$PWD/s1.qcow2"
crash m after-switch "$PWD/s2.qcow2" snapshot m "$PWD/s2.qcow2"
qemu-img info -U s2.qcow2 | grep -q "backing file: $PWD/m.raw" || fail "s2.qcow2's backing: $(qemu-img info -U s2.qcow2)"

# --- commit (of s2.qcow2 into m.raw)
crash m job-started "$PWD/s2.qcow2" commit m
crash m mid-copy "$PWD/s2.qcow2" commit m
crash m before-switch "$PWD/s2.qcow2" commit m
crash m after-switch "$PWD/m.raw" commit m
[ -e s2.qcow2 ] || fail "commit killed after its switch deleted the overlay"

# --- mirror
for p in job-started mid-copy before-switch; do
    crash m $p "$PWD/m.raw" mirror m "$PWD/t-$p.raw"
    [ ! -e "t-$p.raw" ] || fail "mirror killed at $p: the target it created is left"
done
crash m after-switch "$PWD/t4.raw" mirror m "$PWD/t4.raw"
[ -e m.raw ] || fail "mirror killed after its switch deleted the source"
# A plain kill -9 once the copy is under way.
spaced
old=$(rec m pid)
( rc=0; $X mirror m "$PWD/t5.raw" --json >t5.out 2>t5.err || rc=$?; echo $rc >t5.rc ) &
mpid=$!
for _ in $(seq 1 200); do grep -q '"status":"running"' t5.out 2>/dev/null && break; sleep 0.02; done
kill -KILL "$old"
wait "$mpid"
new_server m "$old"
served=$(rec m image)
case $served in
    "$PWD/t4.raw") [ ! -e t5.raw ] || fail "timed kill: the disk is on t4.raw, but the unrecorded target t5.raw is left" ;;
    "$PWD/t5.raw") ;;
    *) fail "timed kill: the new server serves $served" ;;
esac
[ "$(cat t5.rc)" != 0 ] || [ "$served" = "$PWD/t5.raw" ] || fail "mirror exited 0 but the disk is on $served"
step "timed kill -9 of $old during a mirror ($(grep -c . t5.out) progress lines, exit $(cat t5.rc)): $NEW serves $(basename "$served")"

# --- Cancel by signal, with the job held mid-copy (fio still running on m).
# cancel SIGNAL VERB...: exit 130; sets nothing; the caller checks what stays.
cancel() {
    local sig=$1; shift
    arm m stall-mid-copy
    rm -f cancel.out
    $X "$@" --json >cancel.out 2>cancel.err &
    local cpid=$!
    for _ in $(seq 1 300); do grep -q '"status":"running"' cancel.out 2>/dev/null && break; sleep 0.02; done
    grep -q '"status":"running"' cancel.out || { cat cancel.err; fail "$*: no running job to interrupt"; }
    kill -"$sig" "$cpid"
    local rc=0; wait "$cpid" || rc=$?
    [ "$rc" = 130 ] || { cat cancel.out cancel.err; fail "$* interrupted by SIG$sig: exit $rc, not 130"; }
    [ "$(qmp m '{"execute":"query-jobs"}')" = '{"return": []}' ] || fail "$* interrupted by SIG$sig: a job is left: $(qmp m '{"execute":"query-jobs"}')"
}
before=$(rec m image)
for sig in INT TERM; do
    cancel $sig mirror m "$PWD/c-$sig.raw"
    [ ! -e "c-$sig.raw" ] || fail "mirror interrupted by SIG$sig left its target"
    [ "$(rec m image)" = "$before" ] || fail "mirror interrupted by SIG$sig moved the disk to $(rec m image)"
    step "mirror interrupted by SIG$sig: exit 130, disk stays on $(basename "$before"), target removed, no job left"
done
$X snapshot m "$PWD/m1.qcow2" >/dev/null
dd if=/dev/urandom of="$dev_m" bs=1M seek=20 count=4 oflag=direct status=none   # data in the overlay to commit
for sig in INT TERM; do
    cancel $sig commit m
    [ "$(rec m image)" = "$PWD/m1.qcow2" ] && [ -e m1.qcow2 ] || fail "commit interrupted by SIG$sig: disk on $(rec m image)"
    step "commit interrupted by SIG$sig: exit 130, disk stays on m1.qcow2, no job left"
done
fio_stop m
served=$(rec m image)
qemu-img compare -U -f raw "$dev_m" "$served" >/dev/null || fail "disk m differs from $served"
dd if=/dev/urandom of="$dev_m" bs=64k count=16 oflag=direct status=none || fail "disk m not writable at the end"
step "mirror and cancels: fio verify clean ($FIO_ROUNDS rounds), disk m = $(basename "$served")"
$X del m
expect_no_disks
