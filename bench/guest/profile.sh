# Guest side of bench/profile (bench/profile prepends settings and a timeout header).
# Settings: PROFILE_SECONDS, PROFILE_WORKLOADS, IMAGE_MB
#
# For vduse-export and qemu-storage-daemon (1 queue, one at a time, each alone in the guest), per
# workload: fio for PROFILE_SECONDS while we count the server's CPU time (schedstat, all threads),
# context switches and system calls (perf stat, raw_syscalls tracepoint), and the guest's CPU
# split (/proc/stat); then the same run again under `perf record` (cpu-clock; TCG has no PMU) for
# a flat profile of the server and of the whole guest.
set -uo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }
R=$RESULTS
mkdir -p "$R/perf"
[ -x "$VDUSE_EXPORT" ] || fail "no binary at $VDUSE_EXPORT"
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
echo -1 >/proc/sys/kernel/perf_event_paranoid
echo 0 >/proc/sys/kernel/kptr_restrict
PERF=$(command -v perf)
"$PERF" --version >"$R/perf/version.txt" 2>&1 || note "perf does not run: $(cat "$R/perf/version.txt")"

mkfifo "$PWD/.sleep"; exec 7<>"$PWD/.sleep"
nap() { read -r -t "$1" -u 7 _ || true; }

fallocate -l "${IMAGE_MB}M" "$PWD/ours.img"
fallocate -l "${IMAGE_MB}M" "$PWD/qsd.img"

start_ours() {
    rm -f ours.out
    "$VDUSE_EXPORT" serve \
        --blockdev "driver=file,node-name=file0,filename=$PWD/ours.img" \
        --blockdev driver=raw,node-name=disk0,file=file0 \
        --object iothread,id=io0 \
        --export "type=vduse-blk,id=exp0,node-name=disk0,name=ours,writable=on,num-queues=1,queue-size=256,iothread=io0" \
        >ours.out 2>>ours.err &
    PID=$!
    for ((i = 0; i < 3000; i++)); do [ -s ours.out ] && break; nap 0.01; done
    DEV=$(awk '{print $3; exit}' ours.out)
    [ -b "$DEV" ] || { cat ours.err >&2; fail "vduse-export not ready"; }
}
start_qsd() {
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=f0,filename=$PWD/qsd.img,aio=io_uring" \
        --blockdev driver=raw,node-name=n0,file=f0 --object iothread,id=io0 \
        --export "type=vduse-blk,id=e1,node-name=n0,name=qsd,num-queues=1,queue-size=256,writable=on,iothread=io0" \
        >>qsd.out 2>>qsd.err &
    PID=$!
    for ((i = 0; i < 3000; i++)); do [ -e /dev/vduse/qsd ] && break; nap 0.01; done
    vdpa dev add name qsd mgmtdev vduse || fail "vdpa dev add"
    for ((i = 0; i < 3000; i++)); do
        blk=$(ls /sys/bus/vdpa/devices/qsd/virtio*/block/ 2>/dev/null || true)
        [ -n "$blk" ] && [ -b "/dev/$blk" ] && break; nap 0.01
    done
    DEV=/dev/$blk
}
stop() {
    kill -TERM "$PID" 2>/dev/null; vdpa dev del qsd 2>/dev/null; wait "$PID" 2>/dev/null
    for ((i = 0; i < 100; i++)); do [ -z "$(ls /dev/vduse | grep -v control)" ] && break; nap 0.05; done
}

cpu_ns() { # sum of on-CPU ns over the process's threads
    local t s=0
    for t in /proc/"$1"/task/*/schedstat; do read -r a _ <"$t"; s=$((s + a)); done
    echo "$s"
}
ctxsw() {
    local t s=0
    for t in /proc/"$1"/task/*/status; do
        s=$((s + $(awk '/_ctxt_switches/ {n += $2} END {print n}' "$t")))
    done
    echo "$s"
}
stat_cpu() { awk '/^cpu / {print $2+$3, $4, $5, $7+$8}' /proc/stat; }  # user sys idle irq+softirq (ticks)

source "$PROJECT/bench/guest/workloads.sh"
fio_run() { # DEV WORKLOAD OUT
    # shellcheck disable=SC2046
    fio --name="$2" --filename="$1" --ioengine=io_uring --direct=1 --time_based --runtime="$PROFILE_SECONDS" \
        --size="${IMAGE_MB}M" --randrepeat=0 --norandommap $(fio_args "$2") --output-format=json --output="$3" >/dev/null 2>&1
}
ios() { python3 -c 'import json,sys; t=open(sys.argv[1]).read(); j=json.loads(t[t.index("{"):])["jobs"][0]; print(j["read"]["total_ios"]+j["write"]["total_ios"], int(j["read"]["iops"]+j["write"]["iops"]))' "$1" 2>/dev/null ||
      awk 'BEGIN{print "0 0"}'; }

read -ra workloads <<<"$PROFILE_WORKLOADS"
: >"$R/cost.txt"
for target in ours qsd; do
    "start_$target"
    note "$target on $DEV (pid $PID)"
    for w in "${workloads[@]}"; do
        c0=$(cpu_ns "$PID"); x0=$(ctxsw "$PID"); s0=$(stat_cpu)
        "$PERF" stat -e raw_syscalls:sys_enter -p "$PID" -x, -o "$R/perf/$target.$w.syscalls" &
        sp=$!
        fio_run "$DEV" "$w" "$R/perf/$target.$w.fio.json"
        kill -INT "$sp"; wait "$sp" 2>/dev/null
        c1=$(cpu_ns "$PID"); x1=$(ctxsw "$PID"); s1=$(stat_cpu)
        read -r n iops < <(ios "$R/perf/$target.$w.fio.json")
        sys=$(awk -F, '/raw_syscalls/ {print $1; exit}' "$R/perf/$target.$w.syscalls" 2>/dev/null)
        echo "$target $w ios=$n iops=$iops server_cpu_ms=$(( (c1 - c0) / 1000000 )) ctxsw=$((x1 - x0)) syscalls=${sys:-?} guest_stat_before=[$s0] after=[$s1]" | tee -a "$R/cost.txt"
        # Profiles: the server alone (with call graphs) and the whole guest.
        "$PERF" record -e cpu-clock -F 999 -g -p "$PID" -o "$R/perf/$target.$w.data" -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1 &
        rp=$!
        "$PERF" record -e cpu-clock -F 499 -a -o "$R/perf/$target.$w.all.data" -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1 &
        ra=$!
        fio_run "$DEV" "$w" "$R/perf/$target.$w.fio2.json"
        wait "$rp" "$ra"
    done
    stop
done
cp /proc/kallsyms "$R/perf/kallsyms"
for f in "$R"/perf/*.data; do
    b=${f%.data}
    if [[ $f == *.all.data ]]; then
        "$PERF" report -i "$f" --stdio --no-children --sort comm,dso 2>/dev/null | grep -v '^$' | head -40 >"$b.comm.txt"
    fi
    "$PERF" report -i "$f" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.7 2>/dev/null | grep -v '^$' | head -80 >"$b.sym.txt"
done
note "done"
