# The network-backend rows of the benchmark (sourced by bench.sh after the raw rounds; uses its
# helpers: start_ours_with, start_qsd_with, run_fio, alive/NET_PID, nap, now, ms_since, note, fail).
#
# Settings: NBD, RBD (0|1), NET_ROUNDS, NET_QUEUE_SETS, NET_WORKLOADS, IMAGE_MB, QUEUE_SIZE.
#
# NBD=1: one nbdkit server, file plugin on a fallocated IMAGE_MB image on the guest tmpfs (the
# storage the raw rows use, so the rows differ only in the NBD client path; the memory plugin
# would allocate on first write and serialise on its own lock), over a unix socket, default
# threads. Per round four clients are attached to that one export at once and measured one after
# the other in a rotated order (as the raw rows):
#   nbdours  vduse-export --blockdev driver=nbd,server.type=unix,... -> /dev/vdX (VDUSE)
#   nbdqsd   qemu-storage-daemon --blockdev driver=nbd,... --export type=vduse-blk (VDUSE)
#   nbdqemu  qemu-nbd --connect=/dev/nbd0 -f raw nbd+unix:///bench?socket=... (kernel nbd device,
#            qemu-nbd relays between it and the server)
#   nbdkern  nbd-client -unix SOCKET /dev/nbd1 -N bench (kernel nbd device talking to the server
#            itself; -C QUEUES connections with more than one queue)
# RBD=1: a one-node Ceph cluster (Tests/testbed/ceph-lib.sh: memstore, cephx, 127.0.0.1) and
# one IMAGE_MB image per client, each written in full with `rbd bench` before any is measured
# (reads of never-written objects would not touch the OSD):
#   rbdours  vduse-export --blockdev driver=rbd,pool=rbd,image=rbdours,conf=...
#   rbdqsd   qemu-storage-daemon --blockdev driver=rbd,pool=rbd,image=rbdqsd,conf=... (vduse-blk)
#   rbdkrbd  `rbd map -o noudev rbd/rbdkrbd` (the kernel's RBD client), if the guest can map it
# Both librbd users run with librbd's defaults (rbd cache on: QEMU turns it on for cache.direct=off,
# vduse-export leaves librbd's default). A client that cannot be set up (nbd-client missing, rbd map
# refused) is recorded as an error and left out; the VDUSE servers failing is fatal.

read -ra net_workloads <<<"${NET_WORKLOADS:-randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8}"
read -ra net_queue_sets <<<"${NET_QUEUE_SETS:-1}"
NET_ROUNDS=${NET_ROUNDS:-2}
for w in "${net_workloads[@]}"; do fio_args "$w" >/dev/null || fail "unknown workload $w"; done

kmod() { modprobe "$1" 2>/dev/null || modprobe -d "$PROJECT/.testbed/kroot" "$@"; }

# measure_set QUEUES ROUND NAME=DEV...: every network workload against every target, the order
# rotated from workload to workload and round to round.
measure_set() {
    local q=$1 round=$2; shift 2
    local specs=("$@") n=$# wi=0 w k sp
    for w in "${net_workloads[@]}"; do
        for ((k = 0; k < n; k++)); do
            sp=${specs[$(((k + wi + round) % n))]}
            run_fio "${sp%%=*}" "${sp#*=}" "$w" "$q" "$round"
        done
        wi=$((wi + 1))
    done
}

# wait_size DEV: until the kernel block device has a size (nbd devices exist before they connect).
wait_size() {
    local s i
    for ((i = 0; i < 4000; i++)); do
        s=$(cat "/sys/block/$(basename "$1")/size" 2>/dev/null || echo 0)
        [ "$s" != 0 ] && return 0
        nap 0.005
    done
    return 1
}

# stop_vduse NAME PID KIND: peak RSS, then the server (QSD's vdpa device first) gone.
stop_vduse() {
    local name=$1 pid=$2 kind=$3 i
    echo "rss $name $q $round $(hwm_kb "$pid")" >>"$EVENTS"
    [ "$kind" = qsd ] && { vdpa dev del "$name" 2>/dev/null || true; }
    kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    for ((i = 0; i < 200; i++)); do [ ! -e "/dev/vduse/$name" ] && break; nap 0.05; done
}

# start_pair KIND QUEUES ROUND QI BLOCKDEV_OURS BLOCKDEV_QSD: vduse-export as KINDours and QSD as
# KINDqsd, the one created first alternating between rounds (as in the raw rows); their pids in
# NET_PID, their devices in PAIR_DEV.
declare -A PAIR_DEV=()
start_pair() {
    local kind=$1 q=$2 round=$3 qi=$4 bd_ours=$5 bd_qsd=$6 order
    start_one_of_pair() {
        if [ "$1" = ours ]; then start_ours_with "${kind}ours" "$q" "$bd_ours"; else start_qsd_with "${kind}qsd" "$q" "$bd_qsd"; fi
        NET_PID[$kind$1]=$STARTED_PID PAIR_DEV[$kind$1]=$STARTED_DEV
    }
    if (((round + qi) % 2)); then order=(ours qsd); else order=(qsd ours); fi
    start_one_of_pair "${order[0]}"; start_one_of_pair "${order[1]}"
    echo "order $kind $q $round ${order[0]}-first" >>"$EVENTS"
}

net_t0=$EPOCHREALTIME

# --- NBD --------------------------------------------------------------------------------------
if [ "${NBD:-0}" = 1 ]; then
    for c in nbdkit nbdinfo qemu-nbd; do command -v $c >/dev/null || fail "$c missing: scripts/install-deps testbed"; done
    kmod nbd || fail "modprobe nbd"
    mkdir -p /run/lock  # qemu-nbd --connect locks /var/lock/qemu-nbd-DEV; /run is a bare tmpfs here
    have_nbd_client=1
    command -v nbd-client >/dev/null || { have_nbd_client=0; echo "error setup nbdkern nbd-client-missing" >>"$EVENTS"; note "nbd-client not installed: no nbdkern row"; }
    {
        echo "nbdkit $(nbdkit --version | head -1)"
        echo "qemu_nbd $(qemu-nbd --version | head -1)"
        [ "$have_nbd_client" = 1 ] && echo "nbd_client $(nbd-client -V 2>&1 | head -1)"
    } >>"$META"
    fallocate -l "${IMAGE_MB}M" "$PWD/nbd.img" || fail "cannot allocate nbd.img"
    SOCK=$PWD/nbd.sock
    URI="nbd+unix:///bench?socket=$SOCK"
    nbdkit -f --unix "$SOCK" file file="$PWD/nbd.img" >nbdkit.log 2>&1 &
    NBDKIT_PID=$!
    for ((i = 0; i < 200; i++)); do timeout 10 nbdinfo --can connect "$URI" 2>/dev/null && break; nap 0.1; done
    timeout 10 nbdinfo --can connect "$URI" || { cat nbdkit.log; fail "nbdkit not up"; }
    note "nbdkit file plugin on $IMAGE_MB MiB (tmpfs), unix socket $SOCK"
    qi=0
    for q in "${net_queue_sets[@]}"; do
        for ((round = 1; round <= NET_ROUNDS; round++)); do
            bd_ours="driver=nbd,node-name=disk0,server.type=unix,server.path=$SOCK,export=bench"
            bd_qsd="driver=nbd,node-name=n0,server.type=unix,server.path=$SOCK,export=bench"
            start_pair nbd "$q" "$round" "$qi" "$bd_ours" "$bd_qsd"
            specs=("nbdours=${PAIR_DEV[nbdours]}" "nbdqsd=${PAIR_DEV[nbdqsd]}")
            t0=$(now)
            rm -f qemu-nbd.pid
            if qemu-nbd --connect=/dev/nbd0 --format=raw --pid-file="$PWD/qemu-nbd.pid" "$URI" 2>qemu-nbd.err &&
                wait_size /dev/nbd0; then
                echo "startup nbdqemu $q $(ms_since "$t0")" >>"$EVENTS"
                NET_PID[nbdqemu]=$(cat qemu-nbd.pid)
                specs+=("nbdqemu=/dev/nbd0")
            else
                echo "error setup nbdqemu $q $round" >>"$EVENTS"; note "qemu-nbd --connect failed: $(cat qemu-nbd.err)"
            fi
            if [ "$have_nbd_client" = 1 ]; then
                t0=$(now)
                conns=(); ((q > 1)) && conns=(-C "$q")
                if nbd-client -unix "$SOCK" /dev/nbd1 -N bench "${conns[@]}" >nbd-client.log 2>&1 && wait_size /dev/nbd1; then
                    echo "startup nbdkern $q $(ms_since "$t0")" >>"$EVENTS"
                    specs+=("nbdkern=/dev/nbd1")
                else
                    echo "error setup nbdkern $q $round" >>"$EVENTS"; note "nbd-client failed: $(cat nbd-client.log)"
                fi
            fi
            note "NBD round $round, $q queue(s): ${specs[*]}"
            measure_set "$q" "$round" "${specs[@]}"
            kill -0 "$NBDKIT_PID" 2>/dev/null || fail "nbdkit died"
            if [ -n "${NET_PID[nbdqemu]:-}" ]; then
                echo "rss nbdqemu $q $round $(hwm_kb "${NET_PID[nbdqemu]}")" >>"$EVENTS"
                qemu-nbd --disconnect /dev/nbd0 >/dev/null 2>&1 || true
                for ((i = 0; i < 200; i++)); do kill -0 "${NET_PID[nbdqemu]}" 2>/dev/null || break; nap 0.05; done
                unset 'NET_PID[nbdqemu]'
            fi
            [ "$have_nbd_client" = 1 ] && { nbd-client -d /dev/nbd1 >/dev/null 2>&1 || true; }
            stop_vduse nbdours "${NET_PID[nbdours]}" ours
            stop_vduse nbdqsd "${NET_PID[nbdqsd]}" qsd
            unset 'NET_PID[nbdours]' 'NET_PID[nbdqsd]'
            note "NBD queues $q round $round done at $(ms_since "$net_t0") ms"
        done
        qi=$((qi + 1))
    done
    kill "$NBDKIT_PID" 2>/dev/null; wait "$NBDKIT_PID" 2>/dev/null
    rm -f "$PWD/nbd.img"
fi

# --- RBD --------------------------------------------------------------------------------------
if [ "${RBD:-0}" = 1 ]; then
    for c in ceph-mon ceph-osd rbd; do command -v $c >/dev/null || fail "$c missing: scripts/install-deps testbed"; done
    source "$PROJECT/Tests/testbed/ceph-lib.sh"
    loopback_up || fail "loopback"
    t0=$(now)
    # Three images of IMAGE_MB in the osd's memory, with room to spare.
    CEPH_MEMSTORE_BYTES=$(((3 * IMAGE_MB + 512) << 20))
    ceph_up "$PWD/ceph" || { ceph_logs; fail "the Ceph cluster did not come up"; }
    echo "ceph $(ceph-osd --version | head -1)" >>"$META"
    note "Ceph up in $(ms_since "$t0") ms"
    rbd_targets=(rbdours rbdqsd)
    kmod rbd && rbd_targets+=(rbdkrbd) || { echo "error setup rbdkrbd no-module" >>"$EVENTS"; note "no rbd module: no krbd row"; }
    for img in "${rbd_targets[@]}"; do
        timeout 120 rbd create --size "${IMAGE_MB}M" "rbd/$img" || fail "rbd create $img"
        t0=$(now)
        timeout 600 rbd bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 \
            --io-total "${IMAGE_MB}M" "rbd/$img" >"fill-$img.log" 2>&1 || { tail -5 "fill-$img.log"; fail "rbd bench (fill) $img"; }
        note "rbd/$img: $IMAGE_MB MiB written in $(ms_since "$t0") ms"
    done
    qi=0
    for q in "${net_queue_sets[@]}"; do
        for ((round = 1; round <= NET_ROUNDS; round++)); do
            bd_ours="driver=rbd,node-name=disk0,pool=rbd,image=rbdours,conf=$CEPH_CONF"
            bd_qsd="driver=rbd,node-name=n0,pool=rbd,image=rbdqsd,conf=$CEPH_CONF"
            start_pair rbd "$q" "$round" "$qi" "$bd_ours" "$bd_qsd"
            specs=("rbdours=${PAIR_DEV[rbdours]}" "rbdqsd=${PAIR_DEV[rbdqsd]}")
            KRBD_DEV=
            if [[ " ${rbd_targets[*]} " == *" rbdkrbd "* ]]; then
                t0=$(now)
                # noudev: no udevd runs in the guest, and rbd map waits for it by default (until the
                # timeout: the kernel had mapped the image long before); devtmpfs makes the node.
                if KRBD_DEV=$(timeout 60 rbd map -o noudev rbd/rbdkrbd 2>krbd.err) && wait_size "$KRBD_DEV" && [ -b "$KRBD_DEV" ]; then
                    echo "startup rbdkrbd $q $(ms_since "$t0")" >>"$EVENTS"
                    specs+=("rbdkrbd=$KRBD_DEV")
                else
                    KRBD_DEV=
                    echo "error setup rbdkrbd $q $round" >>"$EVENTS"; note "rbd map failed: $(head -c 400 krbd.err) $(dmesg | grep -E 'libceph|rbd' | tail -3)"
                    rbd_targets=(rbdours rbdqsd)  # not again in later rounds
                fi
            fi
            note "RBD round $round, $q queue(s): ${specs[*]}"
            measure_set "$q" "$round" "${specs[@]}"
            [ -n "$KRBD_DEV" ] && { timeout 120 rbd unmap -o noudev "$KRBD_DEV" 2>/dev/null || note "rbd unmap $KRBD_DEV failed"; }
            stop_vduse rbdours "${NET_PID[rbdours]}" ours
            stop_vduse rbdqsd "${NET_PID[rbdqsd]}" qsd
            unset 'NET_PID[rbdours]' 'NET_PID[rbdqsd]'
            note "RBD queues $q round $round done at $(ms_since "$net_t0") ms"
        done
        qi=$((qi + 1))
    done
    ceph_down
fi
