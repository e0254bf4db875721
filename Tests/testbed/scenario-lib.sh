# Helpers shared by the test-bed scenarios (sourced by bash inside the guest).
# Needs VDUSE_EXPORT (the binary) from the runner.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }

# expect_exit N PATTERN -- CMD...: runs CMD with its stderr in err.txt and fails the scenario
# unless CMD exits N and, if PATTERN is not empty, err.txt has a line matching PATTERN (grep).
expect_exit() {
    local want=$1 pattern=$2 rc=0
    shift 2
    [ "${1-}" = -- ] && shift
    "$@" 2>err.txt || rc=$?
    [ "$rc" = "$want" ] || fail "$*: exit $rc, want $want ($(cat err.txt))"
    [ -z "$pattern" ] || grep -q -- "$pattern" err.txt || fail "$*: no '$pattern' in its message: $(cat err.txt)"
}

# fio_loop_start NAME: rounds of fio in ./mnt (random writes then crc32c verify, 2 jobs) until
# fio_loop_stop NAME, which fails the scenario if a round failed and sets FIO_ROUNDS;
# fio_loop_running WHAT fails if the loop has already stopped.
fio_loop_start() {
    rm -f stop
    ( i=0
      while [ ! -e stop ]; do
          i=$((i + 1))
          fio --name="$1" --directory=mnt --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --numjobs=2 \
              --size=2M --verify=crc32c --verify_fatal=1 --do_verify=1 --output="fio.$1.$i.log" || { echo "$i" >fio.failed; exit 1; }
      done
      echo "$i" >"fio.$1.rounds" ) &
    fio_pid=$!
}
fio_loop_stop() {
    touch stop
    wait "$fio_pid" || true
    [ ! -e fio.failed ] || { cat "fio.$1.$(cat fio.failed).log"; fail "fio verify failed in round $(cat fio.failed) of $1"; }
    ! grep -L "err= 0" fio."$1".*.log | grep -q . || fail "fio errors: $(grep -L 'err= 0' fio."$1".*.log)"
    FIO_ROUNDS=$(cat "fio.$1.rounds")
}
fio_loop_running() { kill -0 "$fio_pid" 2>/dev/null || fail "fio stopped before $1"; }

# json EXPR: evaluates the Python expression EXPR over the JSON document on stdin (as `d`).
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# start_export LOGNAME ARGS... : starts `vduse-export serve ARGS...` in the background and waits
# for its ready line ("<export-id> <vduse-name> <device>"). Sets SERVER_PID, DEV (first export's
# device) and READY (all ready lines).
start_export() {
    local log=$1; shift
    rm -f "$log.out"
    "$VDUSE_EXPORT" serve "$@" >"$log.out" 2>"$log.err" &
    SERVER_PID=$!
    local expected
    expected=$(printf '%s\n' "$@" | grep -c '^type=vduse-blk\|"vduse-blk"' || true)
    [ "$expected" -ge 1 ] || expected=1
    for _ in $(seq 1 300); do
        if [ "$(wc -l <"$log.out")" -ge "$expected" ]; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$log.err" >&2; fail "server exited before it was ready"
        fi
        sleep 0.1
    done
    [ "$(wc -l <"$log.out")" -ge "$expected" ] || { cat "$log.err" >&2; fail "server not ready after 30 s"; }
    READY=$(cat "$log.out")
    DEV=$(head -1 "$log.out" | awk '{print $3}')
    [ -b "$DEV" ] || fail "ready line names '$DEV', which is not a block device"
}

# stop_export NAME... : SIGTERM, expect exit 0, and nothing left of these VDUSE names.
stop_export() {
    kill -TERM "$SERVER_PID"
    local rc=0
    wait "$SERVER_PID" || rc=$?
    [ "$rc" -eq 0 ] || fail "server exited with $rc after SIGTERM"
    local name
    for name in "$@"; do expect_gone "$name"; done
}

# expect_gone NAME : no VDUSE device, no vdpa device of that name.
expect_gone() {
    [ ! -e "/dev/vduse/$1" ] || fail "/dev/vduse/$1 left behind"
    [ ! -e "/sys/bus/vdpa/devices/$1" ] || fail "vdpa device $1 left behind"
}

# expect_no_disks : no virtio disk at all in the guest.
expect_no_disks() {
    local left
    left=$(ls /sys/block | grep '^vd' || true)
    [ -z "$left" ] || fail "disks left behind: $left"
    [ "$(ls /dev/vduse)" = control ] || fail "VDUSE devices left behind: $(ls /dev/vduse)"
}

sysblock() { echo "/sys/block/$(basename "$DEV")"; }

# expect_confined PID CAPMASK : every thread of PID runs with no_new_privs, the seccomp filter
# (mode 2) and exactly the capabilities of CAPMASK (hex, as /proc shows them) in its permitted,
# effective and bounding sets, none inheritable or ambient.
expect_confined() {
    local pid=$1 want tasks=0 t s
    want=$(printf '%016x' "$((16#$2))")
    for t in /proc/"$pid"/task/*; do
        s=$(cat "$t/status") || fail "no status for $t"
        tasks=$((tasks + 1))
        grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$s" || fail "thread ${t##*/} of $pid: $(grep NoNewPrivs <<<"$s")"
        grep -q '^Seccomp:[[:space:]]*2$' <<<"$s" || fail "thread ${t##*/} of $pid: $(grep '^Seccomp:' <<<"$s")"
        for f in CapPrm CapEff CapBnd; do
            grep -q "^$f:[[:space:]]*$want$" <<<"$s" || fail "thread ${t##*/} of $pid: $(grep "^$f" <<<"$s"), want $want"
        done
        for f in CapInh CapAmb; do
            grep -q "^$f:[[:space:]]*0*$" <<<"$s" || fail "thread ${t##*/} of $pid: $(grep "^$f" <<<"$s")"
        done
    done
    CONFINED_TASKS=$tasks
}

# --- Test-only crash points of live jobs (live-crash, live-ops-net). crash_points_enable, before
# the export's server starts (`add`), lets its server read ./point on SIGUSR1 (VDUSE_EXPORT_TEST_CRASH).
crash_points_enable() {
    echo none >point
    export VDUSE_EXPORT_TEST_CRASH=$PWD/point
}
step() { note "[${SECONDS}s] $*"; }
# rec NAME FIELD: a top-level string or number of NAME's state record ("" when there is none),
# read from the file (`list --json` says the same, but each run of the debug binary costs
# seconds under TCG). The record is pretty-printed with sorted keys: "image" precedes the
# nested one in "switched".
rec() { grep -o "\"$2\" : [^,]*" "/run/vduse-export/$1.json" 2>/dev/null | head -1 | sed -e 's/^[^:]*: //' -e 's/"//g' -e 's|\\/|/|g'; }
log_of() { echo "/run/vduse-export/$1.log"; }
# arm NAME WHAT: the server of NAME arms the test switch with WHAT (a job point, kill or stall).
arm() {
    local log lines pid
    log=$(log_of "$1"); lines=$(wc -l <"$log"); pid=$(rec "$1" pid)
    local want="kill at $2"; [[ $2 == stall-* ]] && want="stall at ${2#stall-}"
    echo "$2" >point
    kill -USR1 "$pid"
    for _ in $(seq 1 100); do
        tail -n +"$((lines + 1))" "$log" | grep -qF "crash ($want) armed" && return
        sleep 0.05
    done
    tail -5 "$log"; fail "server $pid of $1 did not arm $2"
}
# new_server NAME OLD: waits until a server other than OLD runs NAME; sets NEW.
new_server() {
    for _ in $(seq 1 300); do
        NEW=$(rec "$1" pid)
        [ "${NEW:-0}" -gt 0 ] && [ "$NEW" != "$2" ] && kill -0 "$NEW" 2>/dev/null && return
        sleep 0.1
    done
    tail -20 "$(log_of "$1")"; fail "no new server for $1 after server $2 was killed"
}
# The supervisor gives up after more than 5 crashes within 30 s: kills at least 6.5 s apart.
LAST_KILL=0
spaced() {
    local wait_ms=$(( LAST_KILL + 6500 - $(date +%s%3N) ))
    [ "$wait_ms" -le 0 ] || sleep "$(awk -v m="$wait_ms" 'BEGIN { print m / 1000 }')"
    LAST_KILL=$(date +%s%3N)
}
# crash NAME POINT EXPECTED VERB...: arms a kill at POINT, runs `vduse-export VERB...` (which must
# fail, as its server dies under it), waits for the supervisor's new server, which must serve
# EXPECTED (the record names it). Its output stays in verb.out and verb.err.
crash() {
    local name=$1 point=$2 expected=$3; shift 3
    local old log lines rc=0
    spaced
    old=$(rec "$name" pid); log=$(log_of "$name"); lines=$(wc -l <"$log")
    arm "$name" "$point"
    timeout 60 "$VDUSE_EXPORT" "$@" >verb.out 2>verb.err || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 124 ] || { cat verb.out verb.err; fail "$* with a kill at $point: exit $rc"; }
    new_server "$name" "$old"
    tail -n +"$((lines + 1))" "$log" | grep -q "ended (signal 9)" || { tail -20 "$log"; fail "$point: the log does not say the server was killed"; }
    local served; served=$(rec "$name" image)
    [ "$served" = "$expected" ] || { cat verb.err; fail "$* killed at $point: the new server serves $served, not $expected"; }
    local shown=$served; [[ $served == /* ]] && shown=$(basename "$served")
    step "$name: $1 killed at $point: exit $rc ($(head -c 160 verb.err)); server $old -> $NEW serves $shown"
}
