# add / list / del as a provisioning script uses them: the device is usable as soon as `add`
# returns, add is idempotent for the same image, del refuses while mounted, a killed server is
# reported dead and cleaned up, bad options create nothing.
# timeout: 400
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT
truncate -s 64M web01.img other.img db.img

dev=$($X add web01.img)
[ -b "$dev" ] || fail "add printed '$dev', not a block device"
dd if=/dev/urandom of="$dev" bs=4k count=16 oflag=direct status=none || fail "device not usable right after add"
[ "$(cat /sys/block/$(basename "$dev")/serial)" = web01 ] || fail "default serial is not the name"
note "add web01.img -> $dev, usable at once, serial web01"

[ "$($X add web01.img)" = "$dev" ] || fail "second add of the same image did not print the same device"
expect_exit 3 '' -- $X add other.img --name web01
grep -q "already exists with another image" err.txt || fail "unexpected message: $(cat err.txt)"
note "idempotent add; another image under the same name refused (exit 3)"

j=$($X add db.img --name db --num-queues 2 --serial DB-0001 --json)
[ "$(echo "$j" | json 'd["name"], d["queues"], d["serial"], d["size"], d["image"].endswith("/db.img"), d["pid"] > 0')" = "db 2 DB-0001 67108864 True True" ] \
    || fail "add --json: $j"
dbdev=$(echo "$j" | json 'd["device"]')
[ -b "$dbdev" ] || fail "add --json device $dbdev"

l=$($X list)
echo "$l"
echo "$l" | grep -E "^web01 +$dev +running" >/dev/null || fail "list does not show web01 running"
echo "$l" | grep -E "^db +$dbdev +running" >/dev/null || fail "list does not show db running"
[ "$($X list --json | json 'sorted(e["name"] + ":" + e["state"] for e in d)')" = "['db:running', 'web01:running']" ] || fail "list --json"
[ "$(stat -c %a /run/vduse-export)" = 700 ] && [ "$(stat -c %a /run/vduse-export/web01.json)" = 600 ] \
    && [ "$(stat -c %a /run/vduse-export/web01.sock)" = 600 ] || fail "state directory modes: $(ls -la /run/vduse-export)"
srv=$($X list --json | json '[e["pid"] for e in d if e["name"] == "web01"][0]')
# A private copy of the host's mounts would pin every host file system (issue 15, item 1).
[ "$(readlink /proc/$srv/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] || fail "the server has a mount namespace of its own"
note "state in /run/vduse-export (0700, records and socket 0600); server in the host's mount namespace"

mkfs.ext4 -q -F "$dev"; mkdir -p mnt; mount "$dev" mnt
expect_exit 5 '' -- $X del web01
grep -q "is mounted on" err.txt || fail "del message: $(cat err.txt)"
[ -b "$dev" ] || fail "refused del removed the device"
umount mnt
$X del web01
[ ! -e "$dev" ] && [ ! -e /dev/vduse/web01 ] || fail "del left the device behind"
$X list | grep -q '^web01 ' && fail "list still shows web01"
note "del refuses while mounted (exit 5), deletes once unmounted"

dev=$($X add web01.img)
mount "$dev" mnt
$X del --force web01 || fail "del --force failed"
umount -l mnt || true
[ ! -e /dev/vduse/web01 ] || fail "del --force left /dev/vduse/web01"
note "del --force works on a mounted export"

# With its supervisor gone too, a killed server stays dead: list says so and del cleans up.
pid=$($X list --json | json '[e["pid"] for e in d if e["name"] == "db"][0]')
sup=$(ps -o ppid= -p "$pid" | tr -d ' ')
kill -9 "$sup" "$pid"
sleep 0.5
$X list | grep -E "^db .* dead" >/dev/null || fail "list does not show db as dead after kill -9: $($X list)"
$X del db || fail "del of a dead export failed"
$X list | grep -q '^db ' && fail "list still shows db"
expect_gone db
note "kill -9 of server and supervisor: list shows dead, del cleans up"

# A server with two exports (serve --record): del removes one and leaves the other serving.
truncate -s 32M m1.img m2.img
start_export multi --record --qmp "$PWD/multi.sock" \
    --blockdev "driver=file,node-name=f1,filename=$PWD/m1.img" --blockdev "driver=file,node-name=f2,filename=$PWD/m2.img" \
    --export type=vduse-blk,id=m1,node-name=f1,name=m1,writable=on --export type=vduse-blk,id=m2,node-name=f2,name=m2,writable=on
[ "$($X list --json | json 'sorted(set(e["pid"] for e in d if e["name"] in ("m1", "m2")))')" = "[$SERVER_PID]" ] || fail "list: $($X list)"
$X del m1 || fail "del m1"
expect_gone m1
kill -0 "$SERVER_PID" || fail "del of one export stopped the whole server"
m2dev=$($X list --json | json '[e["device"] for e in d if e["name"] == "m2"][0]')
dd if=/dev/zero of="$m2dev" bs=4k count=1 oflag=direct status=none || fail "m2 stopped working"
$X del m2 || fail "del m2"
rc=0; wait "$SERVER_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "server exit $rc after its last export was deleted"
expect_gone m2
note "a two-export server: del m1 over QMP left m2 serving; del m2 stopped the server (exit 0)"

rc=0; $X add web01.img --queue-size 3 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -qx "vduse-export: queue-size is invalid" err.txt || fail "bad option: exit $rc, $(cat err.txt)"
expect_exit 1 'iothread "a" not found\|vduse-blk export does not support multi-threading' -- $X add web01.img --iothread a,b
expect_exit 6 '' -- $X del nosuch
[ -z "$($X list)" ] || fail "something left in list: $($X list)"
expect_no_disks
note "bad options exit 1 with QEMU's message and create nothing; unknown name exits 6"
