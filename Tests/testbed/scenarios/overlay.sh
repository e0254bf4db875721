# add BASE --overlay [PATH]: two overlays on one base (raw) written differently, each sees its
# own data, the base is unchanged (checksum) and locked against writers while they run; kill -9
# of one server and `restart`: the new server reopens the same overlay; del removes an overlay,
# del --keep keeps it (qemu-img check clean, backing file = the base); a qcow2 base; failed adds
# (missing base, bad option, base locked by a writer) leave no overlay behind.
# timeout: 600
source "$PROJECT/Tests/testbed/scenario-lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img missing: scripts/install-deps testbed"
X=$VDUSE_EXPORT
export VDUSE_EXPORT_OVERLAY_DIR=$PWD/overlays  # the default /var/lib is read-only in the guest
py() { local code=$1; shift; python3 -c "import json,sys; $code" "$@"; }
head -c 32M /dev/urandom >base.raw
truncate -s 64M base.raw
sum=$(sha256sum <base.raw)
pattern() { python3 -c "import sys; sys.stdout.buffer.write(bytes([$1]) * (1 << 20))"; }

d1=$($X add base.raw --overlay --name ov1)
d2=$($X add base.raw --overlay "$PWD/two.qcow2")
[ -f overlays/ov1.qcow2 ] || fail "no overlay at the default path: $(ls -la overlays)"
[ -f two.qcow2 ] || fail "no overlay at the given path"
$X list | grep -q "^two " || fail "the name is not the overlay's file name: $($X list)"
qemu-img info -U --output=json overlays/ov1.qcow2 >info1.json
py 'd=json.load(open("info1.json")); assert d["format"] == "qcow2" and d["backing-filename"] == sys.argv[1] and d["virtual-size"] == 64 << 20, d' "$PWD/base.raw" \
    || { cat info1.json; fail "overlay's backing file"; }
cmp "$d1" base.raw && cmp "$d2" base.raw || fail "a new overlay does not read as its base"
note "two overlays over base.raw: $d1 (overlays/ov1.qcow2), $d2 (two.qcow2)"

# While they run, the base is theirs to read only: a writer is refused (QEMU's lock message).
expect_exit 3 'Failed to get "write" lock' -- $X add base.raw --name w
rc=0; qemu-io -f raw -c "write 0 4k" base.raw >qio.out 2>&1 || rc=$?
grep -q "Failed to get \"write\" lock" qio.out || fail "qemu-io could write the base under the overlays: $(cat qio.out)"
note "base locked against writers: add exit 3, qemu-io refused"

# Written differently.
pattern 0xa1 | dd of="$d1" bs=1M seek=1 oflag=direct status=none
pattern 0xb2 | dd of="$d2" bs=1M seek=1 oflag=direct status=none
fio --name=ov2 --filename="$d2" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --offset=8M \
    --size=8M --verify=crc32c --verify_fatal=1 --do_verify=1 --output=fio2.log || { cat fio2.log; fail "fio verify on overlay 2"; }
cmp <(dd if="$d1" bs=1M skip=1 count=1 iflag=direct status=none) <(pattern 0xa1) || fail "overlay 1 lost its data"
cmp <(dd if="$d2" bs=1M skip=1 count=1 iflag=direct status=none) <(pattern 0xb2) || fail "overlay 2 lost its data"
cmp -n $((8 << 20)) -i $((8 << 20)) "$d1" base.raw || fail "overlay 1 sees overlay 2's fio writes"
[ "$(sha256sum <base.raw)" = "$sum" ] || fail "the base changed"
note "each overlay reads its own writes; base checksum unchanged"

# kill -9: the supervisor's new server reopens the same overlay (same inode, no new file).
ino=$(stat -c %i overlays/ov1.qcow2)
pid=$($X list --json | py 'print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "ov1"][0])')
kill -KILL "$pid"
for _ in $(seq 1 100); do
    now=$($X list --json | py 'print(next((e["pid"] for e in json.load(sys.stdin) if e["name"] == "ov1" and e["state"] == "running"), ""))')
    [ -n "$now" ] && [ "$now" != "$pid" ] && break
    sleep 0.1
done
[ -n "$now" ] && [ "$now" != "$pid" ] || fail "no new server for ov1 after kill -9"
[ "$(stat -c %i overlays/ov1.qcow2)" = "$ino" ] && [ "$(ls overlays)" = ov1.qcow2 ] || fail "the overlay was replaced: $(ls -li overlays)"
cmp <(dd if="$d1" bs=1M skip=1 count=1 iflag=direct status=none) <(pattern 0xa1) || fail "overlay 1's data after the restart"
$X list --json | py 'r=[e for e in json.load(sys.stdin) if e["name"] == "ov1"][0]; assert r["overlay"] == sys.argv[1] and r["base"] == sys.argv[2] and r["restarts"] == 1, r' \
    "$PWD/overlays/ov1.qcow2" "$PWD/base.raw" || fail "the record lost its overlay after the restart"
note "kill -9 of ov1's server: server $pid -> $now reopened overlays/ov1.qcow2 (inode $ino), data intact"
# restart (the hand-over): the same again.
$X restart ov1 >/dev/null
[ "$(stat -c %i overlays/ov1.qcow2)" = "$ino" ] && [ "$(ls overlays)" = ov1.qcow2 ] || fail "restart replaced the overlay: $(ls -li overlays)"
cmp <(dd if="$d1" bs=1M skip=1 count=1 iflag=direct status=none) <(pattern 0xa1) || fail "overlay 1's data after restart"
$X list --json | py 'r=[e for e in json.load(sys.stdin) if e["name"] == "ov1"][0]; assert r["overlay"] == sys.argv[1] and r["restarts"] == 2, r' \
    "$PWD/overlays/ov1.qcow2" || fail "the record lost its overlay after restart"
note "restart ov1: the new server reopened the same overlay, the record still owns it"

# del removes the overlay; del --keep keeps it, consistent and backed by the base.
$X del ov1
[ ! -e overlays/ov1.qcow2 ] || fail "del left the overlay"
$X del two --keep
[ -f two.qcow2 ] || fail "del --keep removed the overlay"
qemu-img check two.qcow2 >check.log 2>&1 || { cat check.log; fail "qemu-img check of the kept overlay"; }
qemu-img info --output=json two.qcow2 >info2.json
py 'd=json.load(open("info2.json")); assert d["backing-filename"] == sys.argv[1] and d["backing-filename-format"] == "raw", d' "$PWD/base.raw" \
    || { cat info2.json; fail "kept overlay's backing file"; }
qemu-io -f qcow2 -c "read -P 0xb2 1M 1M" two.qcow2 | grep -q "read 1048576/1048576" || fail "kept overlay lost overlay 2's data"
[ "$(sha256sum <base.raw)" = "$sum" ] || fail "the base changed"
note "del removed overlays/ov1.qcow2; del --keep kept two.qcow2: $(tail -1 check.log), backing $(py 'print(json.load(open("info2.json"))["backing-filename"])')"

# A qcow2 base.
qemu-img convert -O qcow2 base.raw baseq.qcow2
dq=$($X add baseq.qcow2 --overlay --name oq)
cmp "$dq" base.raw || fail "an overlay over a qcow2 base does not read as the base"
pattern 0xc3 | dd of="$dq" bs=1M seek=2 oflag=direct status=none
$X del oq
qemu-img compare -q base.raw baseq.qcow2 || fail "the qcow2 base changed"
note "overlay over a qcow2 base reads as the base; the base unchanged after writes"

# Failures leave no overlay behind.
rc=0; $X add nosuch.raw --overlay 2>err || rc=$?
[ "$rc" = 1 ] || fail "missing base: exit $rc ($(cat err))"
rc=0; $X add base.raw --overlay --name bad --num-queues 0 2>err || rc=$?
[ "$rc" = 1 ] || fail "bad option: exit $rc ($(cat err))"
wdev=$($X add base.raw --name wb)
expect_exit 3 'lock' -- $X add base.raw --overlay --name ov3
$X del wb
[ -z "$(ls overlays)" ] || fail "failed adds left overlays: $(ls overlays)"
$X list | grep -q . && fail "exports left: $($X list)"
expect_no_disks
note "missing base (exit 1), bad option (exit 1), base held by a writer (exit 3): no overlay left"
