# Mirror benchmark, in the guest (bench/mirror writes the settings above this line). On the
# guest's tmpfs, an image of IMAGE_MB MiB of random data:
# (a) copying it, idle, to a new raw file on the same tmpfs, ROUNDS rounds, the order rotated
#     each round:
#       ours-cli  `vduse-export mirror` (the verb: process start, QMP, progress, switch)
#       ours-qmp  blockdev-mirror + job-complete over our QMP socket (qmp_mirror.py)
#       qsd       the same against qemu-storage-daemon exporting its own copy with vduse-blk
#       qemu-img  `qemu-img convert -O raw` of the image served by ours (-U: shared, it is idle)
#       ours-v    as ours-qmp, on a second disk whose server has VDUSE_EXPORT_TUNING=copy-kb=
#                 $VARIANT_COPY_KB (when set): the copy-size lever
#     each line of $RESULTS/copy.txt: METHOD ROUND SECONDS BYTES
# (b) fio randrw 4k QD16 on our disk for RUNTIME s, alternately with no job and with mirrors
#     running back to back (each to a fresh raw file, cancelled on READY so the disk stays put):
#     (idle-v, mirror-v: the same on the lever's disk)
#     $RESULTS/iops.txt: CASE ROUND READ_IOPS WRITE_IOPS [COPIES COPY_SECONDS COPY_BYTES]
set -uo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- [${SECONDS}s] $*"; }
R=$RESULTS
X=$VDUSE_EXPORT
DRIVER=$PROJECT/bench/guest/qmp_mirror.py
: >"$R/copy.txt"; : >"$R/iops.txt"
{
    echo "accel $TESTBED_ACCEL"; echo "kernel $(uname -r)"; echo "cpus $(nproc)"
    echo "qsd $(qemu-storage-daemon --version | head -1)"; echo "qemu_img $(qemu-img --version | head -1)"
    echo "fio $(fio --version)"; echo "rounds $ROUNDS"; echo "image_mib $IMAGE_MB"; echo "runtime $RUNTIME"
} >"$R/meta.txt"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.4f", b - a }'; }
size=$((IMAGE_MB << 20))

dd if=/dev/urandom of=src.raw bs=1M count="$IMAGE_MB" status=none || fail "cannot write the image"
cp src.raw qsd0.raw
dev=$($X add src.raw --name mb) || fail "add"
sock=/run/vduse-export/mb.sock
# The lever (VARIANT_COPY_KB): a second disk whose server copies runs of contiguous dirty chunks
# up to that many KiB per request (VDUSE_EXPORT_TUNING copy-kb), measured in the same rotation.
if [ -n "${VARIANT_COPY_KB:-}" ]; then
    cp src.raw v0.raw
    vdev=$(VDUSE_EXPORT_TUNING=copy-kb=$VARIANT_COPY_KB $X add v0.raw --name mbv) || fail "add mbv"
    vsock=/run/vduse-export/mbv.sock
fi
qemu-storage-daemon --blockdev "driver=file,node-name=qf0,filename=$PWD/qsd0.raw,aio=io_uring" \
    --blockdev driver=raw,node-name=q0,file=qf0 --object iothread,id=io0 \
    --export "type=vduse-blk,id=e1,node-name=q0,name=qsd,num-queues=1,writable=on,iothread=io0" \
    --chardev socket,id=m0,path="$PWD/qsd.sock",server=on,wait=off --monitor chardev=m0 >qsd.out 2>qsd.err &
QSD=$!
for _ in $(seq 1 500); do [ -S qsd.sock ] && [ -e /dev/vduse/qsd ] && break; sleep 0.02; done
[ -S qsd.sock ] || { cat qsd.err; fail "qemu-storage-daemon did not start"; }
vdpa dev add name qsd mgmtdev vduse || fail "vdpa dev add qsd"
note "ours $dev, qsd up; image $IMAGE_MB MiB"

cur=$PWD/src.raw   # the image our disk is on (each mirror moves it to a new file, the old deleted)
qnode=q0 qfnode=qf0 qfile=$PWD/qsd0.raw
n=0
run() {
    local method=$1 round=$2 t0 out
    n=$((n + 1))
    case $method in
        ours-cli)
            t0=$(now)
            $X mirror mb "$PWD/o$n.raw" >/dev/null || fail "mirror (verb) $n"
            echo "$method $round $(secs "$t0") $size" >>"$R/copy.txt"
            cur=$PWD/o$n.raw ;;
        ours-qmp)
            truncate -s "$size" "o$n.raw"
            out=$(python3 "$DRIVER" "$sock" mb "$PWD/o$n.raw" on$n complete) || fail "ours blockdev-mirror $n"
            echo "$method $round $out" >>"$R/copy.txt"
            rm -f "$cur"; cur=$PWD/o$n.raw ;;
        ours-v)
            truncate -s "$size" "v$n.raw"
            out=$(python3 "$DRIVER" "$vsock" mbv "$PWD/v$n.raw" vn$n complete) || fail "ours (copy-kb) blockdev-mirror $n"
            echo "$method $round $out" >>"$R/copy.txt"
            rm -f "$vcur"; vcur=$PWD/v$n.raw ;;
        qsd)
            truncate -s "$size" "q$n.raw"
            out=$(python3 "$DRIVER" "$PWD/qsd.sock" "$qnode" "$PWD/q$n.raw" qn$n complete) || fail "qsd blockdev-mirror $n"
            echo "$method $round $out" >>"$R/copy.txt"
            # The old node is no longer the export's: delete it (and free its file on the tmpfs).
            python3 "$PROJECT/Tests/testbed/qmp-client.py" "$PWD/qsd.sock" '{"execute":"qmp_capabilities"}' \
                "{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"$qnode\"}}" \
                "{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"$qfnode\"}}" >>qsd-del.log
            rm -f "$qfile"; qnode=qn$n qfnode=qn$n-file qfile=$PWD/q$n.raw ;;
        qemu-img)
            t0=$(now)
            qemu-img convert -U -f raw -O raw "$cur" "i$n.raw" || fail "qemu-img convert $n"
            echo "$method $round $(secs "$t0") $size" >>"$R/copy.txt"
            cmp -s "$cur" "i$n.raw" || fail "qemu-img's copy differs"
            rm -f "i$n.raw" ;;
    esac
}
vcur=$PWD/v0.raw
methods=(ours-cli ours-qmp qsd qemu-img)
[ -n "${VARIANT_COPY_KB:-}" ] && methods+=(ours-v) && echo "variant copy-kb=$VARIANT_COPY_KB" >>"$R/meta.txt"
nm=${#methods[@]}
for round in $(seq 1 "$ROUNDS"); do
    for k in $(seq 0 $((nm - 1))); do run "${methods[$(( (k + round) % nm ))]}" "$round"; done
    note "copy round $round: $(grep " $round " "$R/copy.txt" | awk '{printf "%s %.2fs  ", $1, $3}')"
done
cmp "$dev" "$cur" || fail "our disk differs from the image it is on after the mirrors"
[ -z "${VARIANT_COPY_KB:-}" ] || cmp "$vdev" "$vcur" || fail "the variant's disk differs from the image it is on"

# (b) IOPS with and without a mirror running.
fio_iops() {  # JSON-FILE DEVICE
    fio --name=iops --filename="$2" --ioengine=io_uring --direct=1 --rw=randrw --bs=4k --iodepth=16 \
        --time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json --output="$1" >/dev/null ||
        fail "fio $1"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(round(j["read"]["iops"]), round(j["write"]["iops"]))' "$1"
}
truncate -s "$size" loop.raw
cases="idle mirror"
[ -n "${VARIANT_COPY_KB:-}" ] && cases="$cases idle-v mirror-v"
for round in $(seq 1 "$ROUNDS"); do
    order=$cases; ((round % 2)) || order=$(tr ' ' '\n' <<<"$cases" | tac | tr '\n' ' ')
    for c in $order; do
        d=$dev s=$sock e=mb
        [[ $c == *-v ]] && d=$vdev s=$vsock e=mbv
        if [[ $c == idle* ]]; then
            echo "$c $round $(fio_iops "$R/fio-$c-$round.json" "$d")" >>"$R/iops.txt"
        else
            rm -f stop
            python3 "$DRIVER" "$s" "$e" "$PWD/loop.raw" "l$round$c" loop "$PWD/stop" >loop.out &
            lp=$!
            sleep 0.5
            r=$(fio_iops "$R/fio-$c-$round.json" "$d")
            touch stop; wait "$lp" || fail "the mirror loop failed"
            echo "$c $round $r $(cat loop.out)" >>"$R/iops.txt"
        fi
    done
    note "iops round $round: $(grep " $round " "$R/iops.txt" | tr '\n' ' ')"
done
$X del mb
[ -z "${VARIANT_COPY_KB:-}" ] || $X del mbv
kill "$QSD"; wait "$QSD" 2>/dev/null || true
note done
