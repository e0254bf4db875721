# Guest side of bench/run (do not run directly: bench/run prepends the settings and a timeout
# header and runs it through the test bed).
#
# Settings (from bench/run): ROUNDS, RUNTIME, RAMP, IMAGE_MB, QUEUE_SETS, WORKLOADS, QUEUE_SIZE, QCOW2,
# RAW, NBD, RBD, NET_ROUNDS, NET_QUEUE_SETS, NET_WORKLOADS,
# VARIANTS ("LABEL=TUNING ...": more vduse-export targets, each with VDUSE_EXPORT_TUNING=TUNING,
# measured in the same rotation as the others; target name vLABEL; a `queues=N` item in TUNING
# gives that target N queues instead, `fs=ext4` puts its image on an ext4 file system instead of
# tmpfs, `node=null` serves null-co instead of an image, `bin=PATH` serves it with another build of
# vduse-export, PATH absolute or relative to the project), JOBS (fio jobs per run, one per CPU;
# default: the queue count), NULLROW (1: our null-co target `oursnull`, the transport ceiling),
# UBLK (path of ublksrv's `ublk`: its loop target, buffered, on an image like ours, and its null
# target, same queue count and depth, as targets `ublk` and `ublknull`).
#
# In one boot, for each queue count: every round sets up vduse-export, qemu-storage-daemon and a
# loop device at once (each on its own image copy on the guest tmpfs; the creation order of the
# two VDUSE servers alternates between rounds), runs every workload against the three in a
# rotated order, records each server's peak RSS (VmHWM) and tears them down. With QCOW2=1 (the
# default) the same round also serves one qcow2 image (two copies) by each VDUSE server, run in
# alternating order after each workload's raw targets: the qcow2 row. RAW=0 skips all of that.
# Every fio run also records the guest's busy CPU time and, for targets with a server process, that
# process's user and system time and page faults (events `cpu`), for CPU per request.
# Then, with NBD=1, the NBD rows (one nbdkit export, four clients) and, with RBD=1, the RBD rows
# (a one-node Ceph cluster, two or three clients): see bench/guest/netbench.sh. Raw fio JSON and
# a line-based record of everything else go to $RESULTS; bench/report turns them into the table.
set -uo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }
R=$RESULTS
mkdir -p "$R/fio"
META=$R/meta.txt       # key value
EVENTS=$R/events.txt   # kind fields... (startup, rss, order, error)
: >"$META"; : >"$EVENTS"

[ -x "$VDUSE_EXPORT" ] || fail "no release binary at $VDUSE_EXPORT (bench/run builds it)"
command -v qemu-storage-daemon >/dev/null || fail "qemu-storage-daemon not installed"

{
    echo "accel $TESTBED_ACCEL"
    echo "kernel $(uname -r)"
    echo "cpus $(nproc)"
    echo "mem_mib $(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))"
    echo "cpu_model $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "fio $(fio --version)"
    echo "qsd $(qemu-storage-daemon --version | head -1)"
    echo "rounds $ROUNDS"
    echo "runtime $RUNTIME"
    echo "ramp $RAMP"
    echo "image_mib $IMAGE_MB"
    echo "queue_size $QUEUE_SIZE"
    echo "queue_sets $QUEUE_SETS"
    echo "workloads $WORKLOADS"
    echo "variants ${VARIANTS:-}"
    echo "jobs ${JOBS:-queues}"
    echo "raw ${RAW:-1}"
    echo "nbd ${NBD:-0}"
    echo "rbd ${RBD:-0}"
    echo "net_rounds ${NET_ROUNDS:-}"
    echo "net_queue_sets ${NET_QUEUE_SETS:-}"
    echo "net_workloads ${NET_WORKLOADS:-}"
    echo "ours_binary $VDUSE_EXPORT"
    echo "null_row ${NULLROW:-0}"
    echo "ublk ${UBLK:-}"
    echo "clk_tck $(getconf CLK_TCK)"
    echo "ours_commit $(cat "$PROJECT/.testbed/bench-commit" 2>/dev/null || echo unknown)"
    echo "start $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >>"$META"

# A sleep without forking (fork+exec is slow under TCG): read with a timeout from a FIFO that
# never gets data.
mkfifo "$PWD/.sleep"; exec 7<>"$PWD/.sleep"
nap() { read -r -t "$1" -u 7 _ || true; }
now() { echo "$EPOCHREALTIME"; }
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# --- images: one per target, fully allocated so every target reads real pages -----------------
read -ra variants <<<"${VARIANTS:-}"
declare -A VTUNING=() VPID=() VDEV=()
for v in "${variants[@]}"; do
    [[ $v =~ ^([A-Za-z0-9]+)=(.+)$ ]] || fail "bad variant '$v' (LABEL=TUNING, LABEL letters and digits)"
    VTUNING[v${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
done
EXT4=$PWD/ext4  # mounted only when a variant asks for it
if [ "${RAW:-1}" = 1 ]; then
# Images of `fs=ext4` variants: on an ext4 file system (in a loop device over a tmpfs file,
# so its page cache and its "disk" are both memory), where reads can hit the page cache or wait.
for v in "${!VTUNING[@]}"; do
    [[ ,${VTUNING[$v]}, == *,fs=ext4,* ]] || continue
    if [ ! -d "$EXT4" ]; then
        mkdir -p "$EXT4"
        truncate -s $(((IMAGE_MB + 64) * ${#VTUNING[@]}))M "$PWD/ext4.fs" && mkfs.ext4 -q "$PWD/ext4.fs" &&
            mount -o loop "$PWD/ext4.fs" "$EXT4" || fail "cannot make the ext4 file system"
    fi
    fallocate -l "${IMAGE_MB}M" "$EXT4/$v.img" && ln -s "$EXT4/$v.img" "$PWD/$v.img" || fail "cannot allocate $v.img on ext4"
done
extra_imgs=()
[ -n "${UBLK:-}" ] && extra_imgs=(ublk)
for t in ours qsd loop "${extra_imgs[@]}" "${!VTUNING[@]}"; do
    [[ $t == v* && ,${VTUNING[$t]}, == *,node=null,* ]] && continue
    [ -e "$PWD/$t.img" ] && continue
    fallocate -l "${IMAGE_MB}M" "$PWD/$t.img" || fail "cannot allocate $t.img on tmpfs"
done
note "images: $(ls "$PWD"/*.img | wc -l) x $IMAGE_MB MiB on $(df -h "$PWD" | awk 'NR==2 {print $1, $2}')"
# The qcow2 row: one qcow2 image (every cluster allocated, as a used disk has them, so neither
# server allocates during the run), copied for each server.
if [ "${QCOW2:-1}" = 1 ]; then
    command -v qemu-img >/dev/null || fail "qemu-img not installed"
    qemu-img create -q -f qcow2 -o preallocation=falloc "$PWD/oursq.qcow2" "${IMAGE_MB}M" || fail "qemu-img create"
    cp "$PWD/oursq.qcow2" "$PWD/qsdq.qcow2"
    note "qcow2 images: 2 x $IMAGE_MB MiB (preallocation=falloc), the same image copied"
fi
fi

# --- targets ----------------------------------------------------------------------------------
OURS_PID= QSD_PID= OURS_DEV= QSD_DEV= LOOP_DEV=

# start_ours_with NAME QUEUES BLOCKDEV...: vduse-export serving the node "disk0" of the --blockdev
# options BLOCKDEV... as /dev/vduse/NAME; sets STARTED_PID and STARTED_DEV.
start_ours_with() {
    local name=$1 q=$2; shift 2
    local bd=() b
    for b in "$@"; do bd+=(--blockdev "$b"); done
    local t0; t0=$(now)
    rm -f "$name.out"
    "$VDUSE_EXPORT" serve "${bd[@]}" \
        --object iothread,id=io0 \
        --export "type=vduse-blk,id=exp0,node-name=disk0,name=$name,writable=on,num-queues=$q,queue-size=$QUEUE_SIZE,iothread=io0" \
        >"$name.out" 2>>"$name.err" &
    STARTED_PID=$!
    local i
    for ((i = 0; i < 6000; i++)); do
        [ -s "$name.out" ] && break
        kill -0 "$STARTED_PID" 2>/dev/null || { cat "$name.err" >&2; fail "vduse-export ($name) exited before it was ready"; }
        nap 0.005
    done
    local ms; ms=$(ms_since "$t0")
    STARTED_DEV=$(awk '{print $3; exit}' "$name.out")
    [ -b "$STARTED_DEV" ] || { cat "$name.err" >&2; fail "vduse-export ($name): no block device ('$STARTED_DEV')"; }
    echo "startup $name $q $ms" >>"$EVENTS"
    note "vduse-export $name ($q queue(s)) ready in $ms ms: $STARTED_DEV"
}
# start_ours_as NAME IMAGE FORMAT QUEUES: an image file on the tmpfs.
start_ours_as() {
    start_ours_with "$1" "$4" "driver=file,node-name=file0,filename=$PWD/$2" "driver=$3,node-name=disk0,file=file0"
}

# start_qsd_with NAME QUEUES BLOCKDEV...: the same with qemu-storage-daemon (node "n0").
start_qsd_with() {
    local name=$1 q=$2; shift 2
    local bd=() b
    for b in "$@"; do bd+=(--blockdev "$b"); done
    local t0; t0=$(now)
    qemu-storage-daemon "${bd[@]}" \
        --object iothread,id=io0 \
        --export "type=vduse-blk,id=e1,node-name=n0,name=$name,num-queues=$q,queue-size=$QUEUE_SIZE,writable=on,iothread=io0" \
        >>"$name.out" 2>>"$name.err" &
    STARTED_PID=$!
    local i
    for ((i = 0; i < 6000; i++)); do
        [ -e "/dev/vduse/$name" ] && break
        kill -0 "$STARTED_PID" 2>/dev/null || { cat "$name.err" >&2; fail "qemu-storage-daemon ($name) exited early"; }
        nap 0.005
    done
    vdpa dev add name "$name" mgmtdev vduse || fail "vdpa dev add $name failed"
    local blk=
    for ((i = 0; i < 6000; i++)); do
        blk=$(ls "/sys/bus/vdpa/devices/$name"/virtio*/block/ 2>/dev/null || true)
        [ -n "$blk" ] && [ -b "/dev/$blk" ] && break
        nap 0.005
    done
    local ms; ms=$(ms_since "$t0")
    STARTED_DEV=/dev/$blk
    [ -b "$STARTED_DEV" ] || fail "qemu-storage-daemon ($name): no block device"
    echo "startup $name $q $ms" >>"$EVENTS"
    note "qemu-storage-daemon $name ($q queue(s)) ready in $ms ms: $STARTED_DEV"
}
# start_qsd_as NAME IMAGE FORMAT QUEUES: an image file on the tmpfs (aio=io_uring).
start_qsd_as() {
    start_qsd_with "$1" "$4" "driver=file,node-name=f0,filename=$PWD/$2,aio=io_uring" "driver=$3,node-name=n0,file=f0"
}

start_ours() { start_ours_as ours ours.img raw "$1"; OURS_PID=$STARTED_PID OURS_DEV=$STARTED_DEV; }
start_qsd() { start_qsd_as qsd qsd.img raw "$1"; QSD_PID=$STARTED_PID QSD_DEV=$STARTED_DEV; }
OURSQ_PID= QSDQ_PID= OURSQ_DEV= QSDQ_DEV=
start_oursq() { start_ours_as oursq oursq.qcow2 qcow2 "$1"; OURSQ_PID=$STARTED_PID OURSQ_DEV=$STARTED_DEV; }
start_qsdq() { start_qsd_as qsdq qsdq.qcow2 qcow2 "$1"; QSDQ_PID=$STARTED_PID QSDQ_DEV=$STARTED_DEV; }

# start_variant vLABEL QUEUES: vduse-export with the variant's tuning.
start_variant() {
    local tuning=${VTUNING[$1]} q=$2 bin=$VDUSE_EXPORT
    [[ ,$tuning, =~ ,queues=([0-9]+), ]] && q=${BASH_REMATCH[1]}
    if [[ ,$tuning, =~ ,bin=([^,]+), ]]; then
        bin=${BASH_REMATCH[1]}; [[ $bin == /* ]] || bin=$PROJECT/$bin
    fi
    [ -x "$bin" ] || fail "variant $1: no binary at $bin"
    if [[ ,$tuning, == *,node=null,* ]]; then
        VDUSE_EXPORT=$bin VDUSE_EXPORT_TUNING=$tuning start_ours_with "$1" "$q" "$NULL_NODE"
    else
        VDUSE_EXPORT=$bin VDUSE_EXPORT_TUNING=$tuning start_ours_as "$1" "$1.img" raw "$q"
    fi
    VPID[$1]=$STARTED_PID VDEV[$1]=$STARTED_DEV
}

# Our null-co node: the transport's ceiling (no storage behind it), as large as the images.
NULL_NODE="driver=null-co,node-name=disk0,size=$((IMAGE_MB * 1048576))"
OURSNULL_PID= OURSNULL_DEV=
start_oursnull() { start_ours_with oursnull "$1" "$NULL_NODE"; OURSNULL_PID=$STARTED_PID OURSNULL_DEV=$STARTED_DEV; }

# ublksrv's `ublk` (UBLK): `add` forks its daemon and returns once /dev/ublkbN is live; its output
# names the device id and the daemon's pid. start_ublk TARGET QUEUES ADD-ARGS...
declare -A UBLK_ID=() UBLK_PID=() UBLK_DEV=()
start_ublk() {
    local t=$1 q=$2; shift 2
    local t0; t0=$(now)
    "$UBLK" add "$@" -q "$q" -d "$QUEUE_SIZE" >"$t.out" 2>>"$t.err" || { cat "$t.out" "$t.err" >&2; fail "ublk add ($t) failed"; }
    local id pid
    id=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' "$t.out" | head -1)
    pid=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' "$t.out" | head -1)
    [ -n "$id" ] && [ -b "/dev/ublkb$id" ] && [ -n "$pid" ] || { cat "$t.out" "$t.err" >&2; fail "ublk ($t): no device or daemon pid"; }
    local ms; ms=$(ms_since "$t0")
    UBLK_ID[$t]=$id UBLK_PID[$t]=$pid UBLK_DEV[$t]=/dev/ublkb$id
    echo "startup $t $q $ms" >>"$EVENTS"
    note "ublk $t ($q queue(s)) ready in $ms ms: /dev/ublkb$id (daemon $pid): $(sed -n 's/^[[:space:]]*flags/flags/p' "$t.out" | head -1)"
}
stop_ublk() { # TARGET QUEUES ROUND
    local t=$1 pid=${UBLK_PID[$1]}
    echo "rss $t $2 $3 $(hwm_kb "$pid")" >>"$EVENTS"
    "$UBLK" del -n "${UBLK_ID[$t]}" >/dev/null 2>>"$t.err" || note "ublk del $t failed"
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; nap 0.05; done
}

start_loop() {
    local t0; t0=$(now)
    LOOP_DEV=$(losetup --direct-io=on --show -f "$PWD/loop.img") || fail "losetup failed"
    [ "$(cat "/sys/block/$(basename "$LOOP_DEV")/loop/dio")" = 1 ] || fail "loop device is not in direct-io mode"
    local ms; ms=$(ms_since "$t0")
    echo "startup loop 1 $ms" >>"$EVENTS"
}

hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Page faults of a server since it started (minor major), all threads: whether the bounce
# mappings keep faulting or are touched once.
faults() { awk '{print $10, $12}' "/proc/$1/stat" 2>/dev/null || echo "0 0"; }

stop_all() {
    local q=$1 round=$2
    echo "rss ours $q $round $(hwm_kb "$OURS_PID")" >>"$EVENTS"
    echo "faults ours $q $round $(faults "$OURS_PID")" >>"$EVENTS"
    echo "faults qsd $q $round $(faults "$QSD_PID")" >>"$EVENTS"
    echo "rss qsd $q $round $(hwm_kb "$QSD_PID")" >>"$EVENTS"
    # What the resident memory is made of at the end (anonymous, file-backed, shared = the
    # VDUSE bounce/IOVA mappings).
    echo "rssparts ours $q $round $(awk '/^Rss(Anon|File|Shmem)/ {printf "%s=%s ", $1, $2}' "/proc/$OURS_PID/status" 2>/dev/null)" >>"$EVENTS"
    echo "rssparts qsd $q $round $(awk '/^Rss(Anon|File|Shmem)/ {printf "%s=%s ", $1, $2}' "/proc/$QSD_PID/status" 2>/dev/null)" >>"$EVENTS"
    kill -TERM "$OURS_PID" 2>/dev/null; wait "$OURS_PID" 2>/dev/null
    vdpa dev del qsd 2>/dev/null || true
    kill -TERM "$QSD_PID" 2>/dev/null; wait "$QSD_PID" 2>/dev/null  # QSD 7.2 may abort here: harmless
    losetup -d "$LOOP_DEV" 2>/dev/null || true
    local v
    for v in "${!VPID[@]}"; do
        echo "rss $v $q $round $(hwm_kb "${VPID[$v]}")" >>"$EVENTS"
        echo "faults $v $q $round $(faults "${VPID[$v]}")" >>"$EVENTS"
        kill -TERM "${VPID[$v]}" 2>/dev/null; wait "${VPID[$v]}" 2>/dev/null
        for ((i = 0; i < 200; i++)); do [ ! -e "/dev/vduse/$v" ] && break; nap 0.05; done
    done
    VPID=() VDEV=()
    if [ -n "$OURSNULL_PID" ]; then
        echo "rss oursnull $q $round $(hwm_kb "$OURSNULL_PID")" >>"$EVENTS"
        kill -TERM "$OURSNULL_PID" 2>/dev/null; wait "$OURSNULL_PID" 2>/dev/null
        for ((i = 0; i < 200; i++)); do [ ! -e /dev/vduse/oursnull ] && break; nap 0.05; done
        OURSNULL_PID=
    fi
    for v in "${!UBLK_PID[@]}"; do stop_ublk "$v" "$q" "$round"; done
    UBLK_ID=() UBLK_PID=() UBLK_DEV=()
    if [ -n "$OURSQ_PID" ]; then
        echo "rss oursq $q $round $(hwm_kb "$OURSQ_PID")" >>"$EVENTS"
        echo "rss qsdq $q $round $(hwm_kb "$QSDQ_PID")" >>"$EVENTS"
        kill -TERM "$OURSQ_PID" 2>/dev/null; wait "$OURSQ_PID" 2>/dev/null
        vdpa dev del qsdq 2>/dev/null || true
        kill -TERM "$QSDQ_PID" 2>/dev/null; wait "$QSDQ_PID" 2>/dev/null
    fi
    for ((i = 0; i < 200; i++)); do
        [ ! -e /dev/vduse/ours ] && [ ! -e /dev/vduse/qsd ] && [ ! -e /dev/vduse/oursq ] && [ ! -e /dev/vduse/qsdq ] && break
        nap 0.05
    done
    OURS_PID= QSD_PID= OURSQ_PID= QSDQ_PID=
}

declare -A NET_PID=()  # network targets with a server process of their own
alive() { # TARGET
    case $1 in
        ours) kill -0 "$OURS_PID" 2>/dev/null ;;
        qsd) kill -0 "$QSD_PID" 2>/dev/null ;;
        oursq) kill -0 "$OURSQ_PID" 2>/dev/null ;;
        qsdq) kill -0 "$QSDQ_PID" 2>/dev/null ;;
        oursnull) kill -0 "$OURSNULL_PID" 2>/dev/null ;;
        ublk|ublknull) kill -0 "${UBLK_PID[$1]}" 2>/dev/null ;;
        loop) true ;;
        v*) kill -0 "${VPID[$1]}" 2>/dev/null ;;
        *) [ -z "${NET_PID[$1]:-}" ] || kill -0 "${NET_PID[$1]}" 2>/dev/null ;;
    esac
}

# --- workloads ---------------------------------------------------------------------------------
source "$PROJECT/bench/guest/workloads.sh"

# The server process of a target (empty for the loop device).
server_pid() {
    case $1 in
        ours) echo "$OURS_PID" ;; qsd) echo "$QSD_PID" ;; oursq) echo "$OURSQ_PID" ;; qsdq) echo "$QSDQ_PID" ;;
        oursnull) echo "$OURSNULL_PID" ;; ublk|ublknull) echo "${UBLK_PID[$1]}" ;; v*) echo "${VPID[$1]:-}" ;;
        *) echo "${NET_PID[$1]:-}" ;;
    esac
}
# Guest CPU busy ticks (all CPUs: everything but idle and iowait); a process's utime, stime and
# minor faults (dead threads included).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
proc_ticks() { [ -n "$1" ] && awk '{print $14, $15, $10}' "/proc/$1/stat" 2>/dev/null || echo "0 0 0"; }

run_fio() { # TARGET DEV WORKLOAD QUEUES ROUND
    local target=$1 dev=$2 w=$3 q=$4 round=$5
    local spid; spid=$(server_pid "$target")
    local b0 p0 t0; b0=$(busy_ticks); p0=$(proc_ticks "$spid"); t0=$EPOCHREALTIME
    local out="$R/fio/$w.q$q.r$round.$target.json"
    local jobs=${JOBS:-$q}
    local size=$((IMAGE_MB / jobs))
    local jobargs=(--numjobs=1)
    if ((jobs > 1)); then jobargs=(--numjobs="$jobs" --cpus_allowed="0-$((jobs - 1))" --cpus_allowed_policy=split --offset_increment="${size}M"); fi
    # shellcheck disable=SC2046
    fio --name="$w" --filename="$dev" --ioengine=io_uring --direct=1 --time_based \
        --runtime="$RUNTIME" --ramp_time="$RAMP" --size="${size}M" --group_reporting \
        --randrepeat=0 --norandommap "${jobargs[@]}" $(fio_args "$w") \
        --output-format=json --output="$out" >/dev/null 2>"$R/fio/$w.q$q.r$round.$target.err" || {
        echo "error fio $target $w $q $round" >>"$EVENTS"
        note "fio failed: $target $w q$q r$round: $(head -c 300 "$R/fio/$w.q$q.r$round.$target.err")"
        rm -f "$out"
    }
    local b1 p1; b1=$(busy_ticks); p1=$(proc_ticks "$spid")
    # cpu TARGET WORKLOAD Q ROUND wall_s guest_busy_ticks server_utime server_stime server_minflt
    read -r pu0 ps0 pf0 <<<"$p0"; read -r pu1 ps1 pf1 <<<"$p1"
    echo "cpu $target $w $q $round $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }') $((b1 - b0)) $((pu1 - pu0)) $((ps1 - ps0)) $((pf1 - pf0))${spid:+ pid}" >>"$EVENTS"
    if ! alive "$target"; then
        echo "error died $target $w $q $round" >>"$EVENTS"
        fail "$target server died during $w (q$q round $round)"
    fi
}

read -ra workloads <<<"$WORKLOADS"
for w in "${workloads[@]}"; do fio_args "$w" >/dev/null || fail "unknown workload $w"; done
read -ra queue_sets <<<"$QUEUE_SETS"
targets=(ours qsd loop)
[ "${NULLROW:-0}" = 1 ] && targets+=(oursnull)
[ -n "${UBLK:-}" ] && targets+=(ublk ublknull)
targets+=("${!VTUNING[@]}")
if [ -n "${UBLK:-}" ] && [ "${RAW:-1}" = 1 ]; then
    [ -x "$UBLK" ] || fail "no ublk binary at $UBLK"
    modprobe ublk_drv 2>/dev/null || modprobe -d "$PROJECT/.testbed/kroot" ublk_drv || fail "cannot load ublk_drv"
    echo "ublk_version $("$UBLK" -v 2>&1 | head -1)" >>"$META"
fi
nt=${#targets[@]}
t_start=$EPOCHREALTIME
qi=0
[ "${RAW:-1}" = 1 ] || queue_sets=()
for q in "${queue_sets[@]}"; do
    ((q <= $(nproc))) || note "warning: $q queues but only $(nproc) vCPUs"
    for ((round = 1; round <= ROUNDS; round++)); do
        # Alternate which VDUSE server is created first (the second device measured slower).
        if (((round + qi) % 2)); then
            start_ours "$q"; start_qsd "$q"; echo "order $q $round ours-first" >>"$EVENTS"
        else
            start_qsd "$q"; start_ours "$q"; echo "order $q $round qsd-first" >>"$EVENTS"
        fi
        start_loop
        [ "${NULLROW:-0}" = 1 ] && start_oursnull "$q"
        if [ -n "${UBLK:-}" ]; then
            start_ublk ublk "$q" -t loop --buffered_io -f "$PWD/ublk.img"
            start_ublk ublknull "$q" -t null
        fi
        for v in "${!VTUNING[@]}"; do start_variant "$v" "$q"; done
        if [ "${QCOW2:-1}" = 1 ]; then
            if (((round + qi) % 2)); then start_oursq "$q"; start_qsdq "$q"; else start_qsdq "$q"; start_oursq "$q"; fi
        fi
        wi=0
        for w in "${workloads[@]}"; do
            # Rotate the order of the targets from workload to workload and round to round.
            for ((k = 0; k < nt; k++)); do
                t=${targets[$(((k + wi + round) % nt))]}
                case $t in
                    ours) dev=$OURS_DEV ;; qsd) dev=$QSD_DEV ;; loop) dev=$LOOP_DEV ;; oursnull) dev=$OURSNULL_DEV ;;
                    ublk|ublknull) dev=${UBLK_DEV[$t]} ;; *) dev=${VDEV[$t]} ;;
                esac
                run_fio "$t" "$dev" "$w" "$q" "$round"
            done
            # The qcow2 pair, in alternating order.
            if [ "${QCOW2:-1}" = 1 ]; then
                for ((k = 0; k < 2; k++)); do
                    if (((k + wi + round) % 2)); then run_fio qsdq "$QSDQ_DEV" "$w" "$q" "$round"
                    else run_fio oursq "$OURSQ_DEV" "$w" "$q" "$round"; fi
                done
            fi
            wi=$((wi + 1))
        done
        stop_all "$q" "$round"
        note "queues $q round $round done at $(ms_since "$t_start") ms"
    done
    qi=$((qi + 1))
done
rm -f ours.img qsd.img loop.img ublk.img oursq.qcow2 qsdq.qcow2 v*.img  # room on the tmpfs for the network rows
if [ -d "$EXT4" ]; then umount "$EXT4" && rm -f ext4.fs; fi
source "$PROJECT/bench/guest/netbench.sh"
echo "guest_seconds $(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')" >>"$META"
note "done"
