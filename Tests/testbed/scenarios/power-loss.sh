# Power loss at every fsync, in the real kernel: a loop device over a file is the host's disk,
# dm-log-writes logs every write it completes (ordered against flushes), an ext4 "host" file system
# on it holds the image (lazy writeback: commit=600, no periodic or background writeback, so only
# explicit flushes make data durable), the image is exported (raw or qcow2) and carries an ext4
# "guest" file system. A workload writes new files, overwrites parts of a large file and writes
# files it never syncs; after fsync of the files and their directory a mark goes into the log. Then
# Tests/testbed/log-replay replays the log onto a copy of the disk from before, and at every mark:
# the host fs mounts (journal replay) and e2fsck -f is clean, a qcow2 passes qemu-img check (leaks
# allowed), the guest fs mounts and fsck -f is clean, every file fsync'd before the mark has
# exactly its content; the same (but the large file) at 4 host flushes spread over the log after
# the image was made, a power cut between two fsyncs (before the first fsync only the host fs and
# the image). Variants: raw, raw --writethrough, qcow2 with 8 KiB clusters (so the guest's writes
# allocate clusters and L2 tables), a qcow2 overlay over a raw base holding the guest fs
# (--writethrough), a qcow2 export restarted (vduse-export restart) during the writes. Negative
# control: qemu-storage-daemon with cache.no-flush=on must lose fsync'd data at some mark.
# timeout: 900
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
export DM_DISABLE_UDEV=1
REPLAY=$PROJECT/Tests/testbed/log-replay
MARKS=${PLW_MARKS:-4}
modprobe -d "$PROJECT/.testbed/kroot" dm-log-writes || fail "no dm-log-writes module"
# Only explicit flushes write anything: no periodic writeback, nothing expires, no background
# writeback below 80 % of memory dirty.
echo 0 >/proc/sys/vm/dirty_writeback_centisecs
echo 360000 >/proc/sys/vm/dirty_expire_centisecs
echo 90 >/proc/sys/vm/dirty_ratio
echo 80 >/proc/sys/vm/dirty_background_ratio
TOP=$PWD

# The check run by log-replay at each mark: bash check.sh DIR KIND MARK.
cat >"$TOP/check.sh" <<'EOF'
set -euo pipefail
W=$1 kind=$2 m=$3
cd "$W"
bad() { echo "CHECK FAILED at $m: $*"; exit 1; }
# At a flush between marks (flush@ENTRY:LAST): the files of the last mark but the large one, which
# the workload is overwriting. Before the mark "base" the image does not exist yet; before the
# first fsync mark the guest fs may still be half made.
sums=$W/sums-$m
case $m in
    flush@*:-|flush@*:base) sums="" ;;
    flush@*) grep -v ' big$' "$W/sums-${m#*:}" >"$W/sums-now"; sums=$W/sums-now ;;
esac
cp --sparse=always work.img chk.img
lo=$(losetup -f --show chk.img)
mkdir -p chkhost chkguest
cleanup() { umount chkguest 2>/dev/null || true; umount chkhost 2>/dev/null || true
            [ -n "${lg:-}" ] && losetup -d "$lg" 2>/dev/null; losetup -d "$lo" 2>/dev/null; rm -f chk.img guest.raw; }
trap cleanup EXIT
mount -t ext4 "$lo" chkhost 2>err || bad "host fs does not mount: $(cat err)"
umount chkhost
e2fsck -f -n "$lo" >e2fsck.log 2>&1 || { cat e2fsck.log; bad "host e2fsck -f"; }
mount -t ext4 -o ro "$lo" chkhost
case $m in flush@*:-) echo "  $m: host fs clean (no image yet)"; exit 0 ;; esac
[ -e chkhost/disk.img ] || bad "the image is missing in the host fs"
case $kind in
    raw|noflush) cp --sparse=always chkhost/disk.img guest.raw ;;
    *)
        rc=0; qemu-img check chkhost/disk.img >qcheck.log 2>&1 || rc=$?
        [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || { cat qcheck.log; bad "qemu-img check: exit $rc"; }
        [ "$rc" -eq 0 ] || echo "  ($m: $(grep -o '[0-9]* leaked clusters' qcheck.log || echo leaks))"
        qemu-img convert -O raw chkhost/disk.img guest.raw || bad "qemu-img convert" ;;
esac
umount chkhost
[ -n "$sums" ] || { echo "  $m: host fs clean (image checked if qcow2)"; exit 0; }
lg=$(losetup -f --show guest.raw)
mount -t ext4 "$lg" chkguest 2>err || bad "guest fs does not mount: $(cat err)"
umount chkguest
fsck.ext4 -f -n "$lg" >fsck.log 2>&1 || { cat fsck.log; bad "guest fsck -f"; }
mount -t ext4 -o ro "$lg" chkguest
( cd chkguest && sha256sum -c --quiet "$sums" ) >sums.log 2>&1 || { cat sums.log; bad "fsync'd files differ"; }
echo "  $m: host fs clean, guest fs clean, $(wc -l <"$sums") fsync'd files intact"
EOF

mapper_node() {
    local maj min
    read -r maj min < <(dmsetup info -c --noheadings -o major,minor --separator ' ' "$1")
    [ -b "/dev/mapper/$1" ] || { mkdir -p /dev/mapper; mknod "/dev/mapper/$1" b "$maj" "$min"; }
}

# export_disk V KIND OPTS... : starts the server for host/disk.img, sets DEV.
export_disk() {
    local v=$1 kind=$2; shift 2
    if [ "$kind" = noflush ]; then
        qemu-storage-daemon --blockdev "driver=file,node-name=file0,filename=$PWD/host/disk.img,cache.no-flush=on" \
            --blockdev driver=raw,node-name=disk0,file=file0 \
            --export "type=vduse-blk,id=exp0,node-name=disk0,name=qsd$v,num-queues=1,writable=on" >qsd.log 2>&1 &
        QSD=$!
        for _ in $(seq 100); do [ -e "/dev/vduse/qsd$v" ] && break; sleep 0.2; done
        vdpa dev add name "qsd$v" mgmtdev vduse
        for _ in $(seq 100); do
            DEV=/dev/$(ls "/sys/bus/vdpa/devices/qsd$v"/virtio*/block/ 2>/dev/null | head -n 1)
            [ -b "$DEV" ] && break; sleep 0.2
        done
    else
        DEV=$($X add "$PWD/host/disk.img" --name "g$v" "$@") || fail "$v: add failed"
    fi
    [ -b "$DEV" ] || fail "$v: no disk"
}

# variant V KIND [OPTS...]   KIND: raw, qcow2, backing, restart (qcow2), noflush (QSD, negative)
variant() {
    local v=$1 kind=$2; shift 2
    local W=$TOP/$v; mkdir -p "$W"; cd "$W"
    truncate -s 200M lower.img; truncate -s 320M log.img
    mkfs.ext4 -q -F lower.img
    cp --sparse=always lower.img base.img
    local lo ll; lo=$(losetup -f --show lower.img); ll=$(losetup -f --show log.img)
    dmsetup create "plw$v" --table "0 $(blockdev --getsz "$lo") log-writes $lo $ll" || fail "$v: dmsetup create"
    mapper_node "plw$v"
    mkdir -p host guest
    mount -t ext4 -o commit=600 "/dev/mapper/plw$v" host
    case $kind in
        raw|noflush) truncate -s 128M host/disk.img ;;
        qcow2|restart) qemu-img create -q -f qcow2 -o cluster_size=8k host/disk.img 128M ;;
        backing)
            # The guest fs with two files lives in the raw base; the overlay gets every write.
            truncate -s 128M host/base.raw; mkfs.ext4 -q -F host/base.raw
            local bl; bl=$(losetup -f --show host/base.raw); mount "$bl" guest
            head -c 3M /dev/urandom >guest/old1; head -c 1M /dev/urandom >guest/old2
            umount guest; losetup -d "$bl"
            (cd host && qemu-img create -q -f qcow2 -o cluster_size=8k -b base.raw -F raw disk.img) ;;
    esac
    sync
    dmsetup message "plw$v" 0 mark base
    export_disk "$v" "$kind" "$@"
    [ "$kind" = backing ] || mkfs.ext4 -q "$DEV"
    mount -t ext4 "$DEV" guest
    sync
    local i
    for i in $(seq 1 "$MARKS"); do
        [ "$kind" = restart ] && [ "$i" -eq 2 ] && { $X restart "g$v" >restart.out 2>&1 & RST=$!; }
        head -c $(( (RANDOM % 256 + 1) * 4096 )) /dev/urandom >"guest/f$i"
        head -c 256K /dev/urandom >"guest/u$i"     # never synced: may or may not survive
        [ "$i" -eq 1 ] && head -c 8M /dev/urandom >guest/big
        dd if=/dev/urandom of=guest/big bs=4k seek=$((RANDOM % 2000)) count=$((RANDOM % 32 + 1)) conv=notrunc status=none
        sync "guest/f$i" guest/big guest
        [ "$kind" = restart ] && [ "$i" -eq 2 ] && { wait "$RST" || { cat restart.out; fail "$v: restart failed"; }; }
        (cd guest && sha256sum f* big old* 2>/dev/null) >"sums-m$i" || true
        dmsetup message "plw$v" 0 mark "m$i"
        head -c 128K /dev/urandom >"guest/u$i-late"  # more unsynced writes between marks
    done
    if [ "$kind" = restart ]; then
        n=$($X list --json | python3 -c "import json,sys; print([e.get('restarts') or 0 for e in json.load(sys.stdin) if e['name'] == 'g$v'][0])")
        [ "$n" = 1 ] || fail "$v: list shows $n restarts, want 1"
    fi
    umount guest
    if [ "$kind" = noflush ]; then vdpa dev del "qsd$v"; kill "$QSD"; wait "$QSD" 2>/dev/null || true
    else $X del "g$v" || fail "$v: del"; fi
    umount host
    dmsetup remove "plw$v"
    losetup -d "$lo" "$ll"
    cp --sparse=always base.img work.img
    local rc=0
    python3 "$REPLAY" log.img work.img --marks m --flush-points "${FLUSH_POINTS:-4}" --check "bash $TOP/check.sh $W $kind \$1" >replay.log 2>&1 || rc=$?
    cat replay.log
    cp replay.log "$RESULTS/replay-$v.log"
    cd "$TOP"
    if [ "$kind" = noflush ]; then
        [ "$rc" -ne 0 ] || fail "$v: the negative control kept every fsync'd file: the scenario cannot fail"
        grep -q "CHECK FAILED" "$W/replay.log" || fail "$v: the negative control failed for another reason"
        note "$v (negative control, QSD cache.no-flush=on): lost fsync'd data as it must: $(grep -o 'CHECK FAILED.*' "$W/replay.log" | head -1)"
    else
        [ "$rc" -eq 0 ] || fail "$v: power loss at a mark lost fsync'd data or broke a file system"
        note "$v: every one of $MARKS marks clean: $(tail -1 "$W/replay.log")"
    fi
    rm -f "$W"/*.img "$W/host"/* 2>/dev/null || true
}

variant raw raw
variant raw-wt raw --writethrough
variant qcow2 qcow2
variant backing-wt backing --writethrough
variant restart restart
variant noflush noflush
