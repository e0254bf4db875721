# The benchmark's workloads, shared by bench.sh and profile.sh (sourced in the guest).
# NAME -> fio arguments; QD is per job (2-queue runs use two jobs, one per vCPU and so one per
# virtqueue).
fio_args() { # WORKLOAD
    case $1 in
        randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
        randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
        randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
        randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
        read-1m-qd8) echo "--rw=read --bs=1M --iodepth=8" ;;
        write-1m-qd8) echo "--rw=write --bs=1M --iodepth=8" ;;
        read-1m-qd32) echo "--rw=read --bs=1M --iodepth=32" ;;   # more in flight than a 16 MiB bounce buffer holds
        write-1m-qd32) echo "--rw=write --bs=1M --iodepth=32" ;;
        *) echo "unknown workload $1" >&2; return 1 ;;
    esac
}
