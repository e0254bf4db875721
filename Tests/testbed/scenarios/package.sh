# The Debian package as a host gets it: the .deb from scripts/build-deb installs with dpkg -i into
# a writable copy of the guest root (an overlayfs over the read-only host root, so dpkg checks the
# declared Depends against a real package database), and everything below runs the INSTALLED
# binary, with /opt/swift hidden: add, list, resize (grow, shrink, refused under a mounted ext4;
# the kernel's /sys/block/vdX/size follows, data below the new end intact), man -l, bash
# completion, and add --persist / del (files, drop-in, unit enablement via systemctl --root).
# Then a real boot: that root under systemd as PID 1 of a container (systemd-nspawn --boot), where
# systemd's boot transaction starts vduse-export@db.service from the link --persist wrote and the
# export comes back with its name, serial and by-vduse link; a live snapshot there rewrites the
# configuration (through the unit's sandbox) and the restarted unit serves the overlay, then a live
# mirror of that chain to a raw file does the same (the data of both layers intact); del in the
# booted system stops and disables the unit. Not proven here: an fstab mount at boot. systemd-fstab-generator ignores
# device entries in a container and device units do not exist there, so the fstab line is checked
# by systemd-analyze verify on the generator's output, not by watching a boot. Also in the
# container /sys is read-only (the server warns that it cannot set msg_timeout) and udevd runs
# outside it (the guest's, on the shared /dev).
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"

shopt -s nullglob
debs=("$PROJECT"/.build/deb/vduse-export_*.deb)
shopt -u nullglob
[ "${#debs[@]}" -ge 1 ] || fail "no .build/deb/vduse-export_*.deb: run scripts/build-deb on the host first"
deb=$(ls -t "${debs[@]}" | head -n 1)
note "package: ${deb#"$PROJECT"/}"

# A writable root: overlayfs, the host root (9p, read-only) below, tmpfs above.
modprobe -d "$PROJECT/.testbed/kroot" overlay || fail "no overlay module"
R=$PWD/root
mkdir -p ov root
mount -t tmpfs ov ov && mkdir -p ov/upper ov/work
mount -t overlay overlay -o lowerdir=/,upperdir=ov/upper,workdir=ov/work "$R" || fail "overlayfs over the host root failed"
for d in proc sys dev; do mount --rbind "/$d" "$R/$d"; done
mount -t tmpfs run "$R/run"
mount -t tmpfs tmp "$R/tmp"
mount -t tmpfs noswift "$R/opt/swift"  # no Swift toolchain or runtime for the installed binary
in_root() { chroot "$R" "$@"; }
nspawn_pid=
cleanup() {
    if [ -n "$nspawn_pid" ]; then kill -TERM "$nspawn_pid" 2>/dev/null; wait "$nspawn_pid" 2>/dev/null; fi  # after a failure only
    in_root udevadm control --exit 2>/dev/null || true
    for n in web01 db; do in_root vduse-export del --force "$n" 2>/dev/null || true; done  # after a failure only
    [ -z "${B:-}" ] || umount -R "$B" 2>/dev/null || umount -lR "$B" 2>/dev/null || true
    umount -R "$R" 2>/dev/null || umount -lR "$R" 2>/dev/null || true
}
trap cleanup EXIT

! in_root test -e /usr/sbin/vduse-export || fail "vduse-export is installed in the host root already; the test would prove nothing"
cp "$deb" "$R/tmp/vduse-export.deb"
in_root dpkg -i /tmp/vduse-export.deb > dpkg.log 2>&1 || { cat dpkg.log; fail "dpkg -i failed"; }
[ "$(in_root dpkg-query -W -f='${db:Status-Status}' vduse-export)" = installed ] || fail "dpkg does not list vduse-export as installed"
for f in /usr/sbin/vduse-export /lib/udev/rules.d/60-vduse-export.rules /lib/systemd/system/vduse-export@.service \
         /usr/share/man/man8/vduse-export.8.gz /usr/share/bash-completion/completions/vduse-export \
         /usr/share/zsh/vendor-completions/_vduse-export /usr/share/doc/vduse-export/copyright; do
    in_root test -f "$f" || fail "$f not installed"
done
[ "$(in_root sh -c 'command -v vduse-export')" = /usr/sbin/vduse-export ] || fail "vduse-export is not /usr/sbin/vduse-export on PATH"
libs=$(in_root ldd /usr/sbin/vduse-export)
! grep -qiE 'not found|swift' <<<"$libs" || fail "the installed binary needs: $libs"
in_root test ! -e /opt/swift/usr/bin/swift || fail "/opt/swift is still visible"
note "dpkg -i: installed, Depends satisfied; the binary links no Swift library and /opt/swift is hidden"

# The packaged udev rules, run by a real udevd in this root.
in_root /lib/systemd/systemd-udevd --daemon

X=vduse-export
truncate -s 64M "$R/tmp/web01.img"
dev=$(in_root $X add /tmp/web01.img) || fail "installed add failed"
disk=$(basename "$dev")
[ "$(readlink -f /dev/disk/by-vduse/web01)" = "$dev" ] || fail "/dev/disk/by-vduse/web01 missing"
in_root $X list | grep -E "^web01 +$dev +running" >/dev/null || fail "list: $(in_root $X list)"
note "installed add -> $dev, by-vduse link from the packaged rules, list shows it running"

# resize: grow, data intact, kernel capacity follows.
head -c 1M /dev/urandom > pattern
dd if=pattern of="$dev" bs=1M oflag=direct status=none
out=$(in_root $X resize web01 128M) || fail "resize grow failed"
[ "$out" = "$dev 134217728" ] || fail "resize printed '$out'"
[ "$(cat /sys/block/$disk/size)" = 262144 ] || fail "kernel sees $(cat /sys/block/$disk/size) sectors after grow, want 262144"
[ "$(stat -c %s "$R/tmp/web01.img")" = 134217728 ] || fail "image not grown"
[ "$(blockdev --getsize64 "$dev")" = 134217728 ] || fail "blockdev --getsize64 after grow"
cmp <(head -c 1M "$dev") pattern || fail "data changed by the grow"
j=$(in_root $X resize web01 --json -- -96M) || fail "resize shrink failed"
[ "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["name"], d["size"])' <<<"$j")" = "web01 33554432" ] || fail "resize --json: $j"
[ "$(cat /sys/block/$disk/size)" = 65536 ] || fail "kernel sees $(cat /sys/block/$disk/size) sectors after shrink, want 65536"
cmp <(dd if="$dev" bs=1M count=1 iflag=direct status=none) pattern || fail "data below the new end changed by the shrink"
note "resize 128M: kernel 262144 sectors, image 128 MiB; resize -96M --json: 65536 sectors; first MiB intact"

mkfs.ext4 -q -F "$dev"
mkdir -p "$R/mnt/fs"
mount "$dev" "$R/mnt/fs"
rc=0; in_root $X resize web01 16M 2>err.txt || rc=$?
[ "$rc" -eq 5 ] || fail "shrink under a mounted ext4 exited $rc (want 5): $(cat err.txt)"
grep -q "is mounted on /mnt/fs" err.txt || fail "message: $(cat err.txt)"
[ "$(cat /sys/block/$disk/size)" = 65536 ] || fail "a refused shrink changed the size"
in_root $X resize web01 +16M >/dev/null || fail "grow under a mounted ext4 failed"
[ "$(cat /sys/block/$disk/size)" = 98304 ] || fail "grow while mounted: $(cat /sys/block/$disk/size)"
umount "$R/mnt/fs"
rc=0; in_root $X resize nosuch 1G 2>/dev/null || rc=$?
[ "$rc" -eq 6 ] || fail "resize of an unknown export exited $rc (want 6)"
note "shrink under a mounted ext4 refused (exit 5: $(cat err.txt | cut -c1-90)...); grow while mounted works"
in_root $X del web01 || fail "del web01"

# man page and completion from their installed places.
in_root man -l /usr/share/man/man8/vduse-export.8.gz > man.txt 2>man.err || fail "man -l: $(cat man.err)"
for s in "EXIT STATUS" FILES EXAMPLES "vduse-export resize NAME SIZE"; do grep -q "$s" man.txt || fail "man page lacks '$s'"; done
reply=$(in_root bash -c 'source /usr/share/bash-completion/completions/vduse-export
    COMP_WORDS=(vduse-export resi); COMP_CWORD=1; COMP_LINE="vduse-export resi"; COMP_POINT=${#COMP_LINE}
    _vduse-export vduse-export resi vduse-export; echo "${COMPREPLY[*]}"') || fail "bash completion does not load"
[ "$reply" = resize ] || fail "completing 'vduse-export resi' gave '$reply'"
note "man -l renders $(wc -l < man.txt) lines with EXIT STATUS, FILES, EXAMPLES; bash completes 'resi' to '$reply'"

# --persist: configuration, drop-in, enablement; idempotent; del undoes it.
mkdir -p "$R/srv/images"  # not /tmp: nspawn mounts a fresh tmpfs there
truncate -s 32M "$R/srv/images/db.img"
dbdev=$(in_root $X add /srv/images/db.img --name db --serial DB-0001 --persist) || fail "add --persist"
conf=$R/etc/vduse-export/db.conf
dropin=$R/etc/systemd/system/vduse-export@db.service.d/persist.conf
link=$R/etc/systemd/system/local-fs.target.wants/vduse-export@db.service
grep -q '^VDUSE_EXPORT_ARGS=.*filename=/srv/images/db.img.*name=db,.*serial=DB-0001' "$conf" || fail "db.conf: $(cat "$conf")"
grep -qx 'RequiresMountsFor=/srv/images/db.img' "$dropin" || fail "drop-in: $(cat "$dropin" 2>&1)"
[ "$(readlink "$link")" = /lib/systemd/system/vduse-export@.service ] || fail "enablement link: $(ls -l "$link" 2>&1)"
[ "$(systemctl --root="$R" is-enabled vduse-export@db.service)" = enabled ] || fail "systemctl --root is-enabled"
verify=$(in_root systemd-analyze verify vduse-export@db.service 2>&1) || true
[ -z "$verify" ] || fail "systemd-analyze verify vduse-export@db.service: $verify"
sums=$(md5sum "$conf" "$dropin")
[ "$(in_root $X add /srv/images/db.img --name db --serial DB-0001 --persist)" = "$dbdev" ] || fail "second add --persist"
[ "$(md5sum "$conf" "$dropin")" = "$sums" ] || fail "second add --persist changed the files"
note "add --persist: db.conf, RequiresMountsFor drop-in, local-fs.target.wants link (is-enabled: enabled), verify clean; again: same device, files unchanged"

# The fstab line README suggests, through the real fstab generator: the mount requires and
# follows the export's unit, and systemd-analyze verify (which builds the start transaction) finds
# no ordering cycle between it, the unit (Before=local-fs.target) and the RequiresMountsFor drop-in.
echo '/dev/disk/by-vduse/db /srv/db ext4 x-systemd.requires=vduse-export@db.service 0 2' > "$R/tmp/fstab"
gen=/run/systemd/generator
mkdir -p "$R$gen" "$R$gen.early" "$R$gen.late"
in_root env SYSTEMD_FSTAB=/tmp/fstab /lib/systemd/system-generators/systemd-fstab-generator $gen $gen.early $gen.late \
    || fail "systemd-fstab-generator failed"
[ "$(grep -cE '^(After|Requires)=.*vduse-export@db\.service' "$R$gen/srv-db.mount")" = 2 ] || fail "srv-db.mount: $(cat "$R$gen/srv-db.mount")"
verify=$(in_root systemd-analyze verify --man=no $gen/srv-db.mount 2>&1) || true
[ -z "$verify" ] || fail "systemd-analyze verify srv-db.mount: $verify"
rm -rf "$R$gen" "$R$gen.early" "$R$gen.late"
note "fstab on /dev/disk/by-vduse/db with x-systemd.requires: generated srv-db.mount requires and follows the unit; verify: no cycle, clean"

# "Reboot": stop the server (the export goes, the configuration stays), then boot this root with
# a real systemd as PID 1 of a container (systemd-nspawn --boot). Nothing starts the export but
# systemd's own boot transaction: local-fs.target wants vduse-export@db.service through the link
# --persist wrote. The container shares the guest's network namespace (the vdpa netlink family)
# and its whole /dev (--bind=/dev: /dev/vduse/control, the /dev/vduse/db that the server creates,
# and the /dev/vdX the kernel adds), and keeps CAP_SYS_ADMIN.
pid=$(in_root $X list --json | python3 -c 'import json,sys; print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')
kill -TERM "$pid"
for _ in $(seq 1 100); do [ -e /dev/vduse/db ] || break; sleep 0.1; done
[ ! -e /dev/vduse/db ] && [ -f "$conf" ] || fail "after stopping the server: /dev/vduse/db still there or db.conf gone"
[ -z "$(ls /sys/bus/vdpa/devices)" ] || fail "vdpa devices left before the boot: $(ls /sys/bus/vdpa/devices)"
[ -x /usr/bin/systemd-nspawn ] || fail "no systemd-nspawn on the host: scripts/install-deps testbed (package systemd-container)"
# nspawn needs the cgroup2 hierarchy, and a cgroup of its own (there is no host systemd to ask).
mkdir -p /sys/fs/cgroup
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cannot mount cgroup2"
mkdir -p /sys/fs/cgroup/container
# The container's root: the same overlay without the chroot's proc/sys/dev/run/tmp mounts (nspawn
# makes its own and refuses a populated /dev), /opt/swift hidden again, /dev empty.
B=$PWD/boot
mkdir -p "$B"
mount --bind "$R" "$B"
mount -t tmpfs noswift "$B/opt/swift"
mount -t tmpfs -o mode=755 dev "$B/dev"  # empty: the host root's /dev (over 9p) has nodes in it
echo "$(date +%s.%N) boot" > boot.times
(echo "$BASHPID" > /sys/fs/cgroup/container/cgroup.procs
 exec systemd-nspawn --boot --directory="$B" --register=no --keep-unit --console=pipe \
     --bind=/dev --capability=CAP_NET_ADMIN --quiet -- systemd.mask=console-getty.service) > nspawn.log 2>&1 < /dev/null &
nspawn_pid=$!
in_ct() { nsenter -t "$ct_pid" -m -p -u -i -r -w "$@"; }
ct_log() { cat nspawn.log | tail -n 40; in_ct journalctl --no-pager -b -u vduse-export@db.service 2>&1 | tail -n 30 || true
           in_ct systemctl status --no-pager vduse-export@db.service 2>&1 | tail -n 15 || true
           dmesg | grep -E 'type=1326|seccomp' | tail -n 5 || true
           in_ct systemctl show vduse-export@db.service -p Result -p ExecMainCode -p ExecMainStatus 2>&1 || true; }
ct_pid=
for _ in $(seq 1 300); do
    ct_pid=$(ps -o pid= --ppid "$nspawn_pid" | tr -d " " | head -n 1) || true
    [ -n "$ct_pid" ] && [ "$(cat /proc/$ct_pid/comm 2>/dev/null)" = systemd ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || { cat nspawn.log; fail "systemd-nspawn exited"; }
    sleep 0.1
done
[ "$(cat /proc/$ct_pid/comm 2>/dev/null)" = systemd ] || { cat nspawn.log; fail "no systemd as the container's PID 1"; }
state=
for _ in $(seq 1 900); do
    state=$(in_ct systemctl is-active vduse-export@db.service 2>/dev/null) || true
    [ "$state" = active ] || [ "$state" = failed ] && break
    # A server that dies at start is restarted (Restart=on-failure): one restart is enough to tell.
    n=$(in_ct systemctl show -P NRestarts vduse-export@db.service 2>/dev/null) || n=
    [[ $n =~ ^[1-9] ]] && { state="restarting ($n restarts)"; break; }
    sleep 0.1
done
[ "$state" = active ] || { ct_log; fail "vduse-export@db.service is '$state' after the boot"; }
echo "$(date +%s.%N) active" >> boot.times
[ "$(in_ct cat /proc/1/comm)" = systemd ] || fail "PID 1 of the container is not systemd"
unit_main=$(in_ct systemctl show -P MainPID vduse-export@db.service)
ct_list=$(in_ct $X list) || fail "list in the container"
newdev=$(awk '$1 == "db" && $3 == "running" { print $2 }' <<<"$ct_list")
[ -n "$newdev" ] && [ -b "$newdev" ] || { ct_log; fail "list in the container: $ct_list"; }
grep -qE "^db +$newdev +running +$unit_main " <<<"$ct_list" || fail "the running db is not the unit's main process $unit_main: $ct_list"
[ "$(cat /sys/block/$(basename "$newdev")/serial)" = DB-0001 ] || fail "serial after the boot: $(cat /sys/block/$(basename "$newdev")/serial)"
for _ in $(seq 1 50); do [ -e /dev/disk/by-vduse/db ] && break; sleep 0.1; done
[ "$(readlink -f /dev/disk/by-vduse/db)" = "$newdev" ] || fail "/dev/disk/by-vduse/db after the boot"
in_ct $X resize db 48M >/dev/null || fail "resize through the unit's QMP socket"
[ "$(cat /sys/block/$(basename "$newdev")/size)" = 98304 ] || fail "resize through the unit: $(cat /sys/block/$(basename "$newdev")/size) sectors"
# The unit's sandbox as systemd rates it, and the server under it confined (its pid in the
# guest's namespace: the NSpid line ends with the container's MainPID).
score=$(in_ct systemd-analyze security --no-pager vduse-export@db.service 2>&1 | sed -n 's/.*Overall exposure level for vduse-export@db.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || { in_ct systemd-analyze security --no-pager vduse-export@db.service 2>&1 | tail -5; fail "no exposure level from systemd-analyze security"; }
python3 -c "import sys; sys.exit(0 if float('$score') <= 3.0 else 1)" || fail "systemd-analyze security: exposure $score, want <= 3.0"
gpid=
for p in $(pgrep -x vduse-export); do grep -qE "^NSpid:.*[[:space:]]$unit_main\$" /proc/$p/status && gpid=$p; done
[ -n "$gpid" ] || fail "no guest pid for the unit's server $unit_main"
expect_confined "$gpid" 1006
note "under the unit: systemd-analyze security exposure $score (<= 3.0); server confined in all $CONFINED_TASKS threads (NoNewPrivs 1, Seccomp 2, caps 0x1006)"
note "systemd-nspawn --boot: systemd (PID 1) started vduse-export@db.service from the enablement link, active after $(awk 'NR==1{a=$1} NR==2{printf "%.1f", $1-a}' boot.times) s; list: db $newdev running, pid $unit_main = the unit's MainPID; serial DB-0001; /dev/disk/by-vduse/db -> $newdev; resize via its QMP socket"

# A live snapshot under the unit's sandbox (ProtectSystem=full; its ReadWritePaths= let the server
# rewrite db.conf and the drop-in before the switch): the restarted unit serves the overlay.
head -c 1M /dev/urandom >base.pattern
dd if=base.pattern of="$newdev" bs=1M oflag=direct status=none  # in db.img, under the overlay to come
in_ct $X snapshot db /srv/images/db-1.qcow2 >/dev/null || { ct_log; fail "snapshot of the unit's export"; }
grep -q '^VDUSE_EXPORT_ARGS=.*filename=/srv/images/db-1.qcow2 --blockdev driver=qcow2,node-name=disk0,file=file0 --export .*serial=DB-0001' "$conf" \
    || fail "db.conf after the snapshot: $(cat "$conf")"
grep -qx 'RequiresMountsFor=/srv/images/db-1.qcow2' "$dropin" || fail "drop-in after the snapshot: $(cat "$dropin")"
in_ct systemctl daemon-reload
in_ct systemctl restart vduse-export@db.service || { ct_log; fail "systemctl restart after the snapshot"; }
image=$(in_ct $X list --json | python3 -c 'import json,sys; print([e["image"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')
[ "$image" = /srv/images/db-1.qcow2 ] && [ "$(in_ct systemctl show -P MainPID vduse-export@db.service)" != "$unit_main" ] \
    || { ct_log; fail "after systemctl restart the unit serves $image"; }
note "snapshot under the unit: db.conf and drop-in name db-1.qcow2; systemctl restart: the unit serves /srv/images/db-1.qcow2"

# A live mirror of that chain to a new raw file under the unit: db.conf and the drop-in follow,
# the overlay is deleted, and the restarted unit serves the mirror with the data of both layers.
db_dev() { in_ct $X list --json | python3 -c 'import json,sys; print([e["device"] for e in json.load(sys.stdin) if e["name"] == "db"][0])'; }
head -c 1M /dev/urandom >top.pattern
dd if=top.pattern of="$(db_dev)" bs=1M seek=8 oflag=direct status=none  # in db-1.qcow2
in_ct $X mirror db /srv/images/db-2.img >/dev/null || { ct_log; fail "mirror of the unit's export"; }
grep -q '^VDUSE_EXPORT_ARGS=.*filename=/srv/images/db-2.img --blockdev driver=raw,node-name=disk0,file=file0 --export .*serial=DB-0001' "$conf" \
    || fail "db.conf after the mirror: $(cat "$conf")"
grep -qx 'RequiresMountsFor=/srv/images/db-2.img' "$dropin" || fail "drop-in after the mirror: $(cat "$dropin")"
[ ! -e "$R/srv/images/db-1.qcow2" ] || fail "the mirror kept its source db-1.qcow2"
unit_main=$(in_ct systemctl show -P MainPID vduse-export@db.service)
in_ct systemctl daemon-reload
in_ct systemctl restart vduse-export@db.service || { ct_log; fail "systemctl restart after the mirror"; }
image=$(in_ct $X list --json | python3 -c 'import json,sys; print([e["image"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')
[ "$image" = /srv/images/db-2.img ] && [ "$(in_ct systemctl show -P MainPID vduse-export@db.service)" != "$unit_main" ] \
    || { ct_log; fail "after systemctl restart the unit serves $image"; }
mdev=$(db_dev)
cmp <(dd if="$mdev" bs=1M count=1 iflag=direct status=none) base.pattern && cmp <(dd if="$mdev" bs=1M skip=8 count=1 iflag=direct status=none) top.pattern \
    || fail "the restarted unit's disk lacks the data written before the mirror"
cmp <(head -c 1M "$R/srv/images/db-2.img") base.pattern && cmp <(dd if="$R/srv/images/db-2.img" bs=1M skip=8 count=1 status=none) top.pattern \
    || fail "db-2.img lacks the data of the chain"
note "mirror under the unit: db.conf and drop-in name db-2.img (raw), db-1.qcow2 deleted; systemctl restart: the unit serves /srv/images/db-2.img with the data of both layers"

# del in the booted system: the unit's server stops with exit 0 (no restart), the unit is disabled
# by the running systemd, and the files go.
in_ct $X del db || fail "del of the persistent export in the booted container"
for _ in $(seq 1 100); do state=$(in_ct systemctl is-active vduse-export@db.service 2>/dev/null) || true; [ "$state" = inactive ] && break; sleep 0.1; done
[ "$state" = inactive ] || { ct_log; fail "vduse-export@db.service is '$state' after del (want inactive: exit 0, no restart)"; }
[ "$(in_ct systemctl is-enabled vduse-export@db.service 2>/dev/null)" = disabled ] || fail "still enabled in the booted system after del"
[ ! -e "$conf" ] && [ ! -e "$dropin" ] && [ ! -e "$link" ] || fail "del left: $(ls "$conf" "$dropin" "$link" 2>&1)"
[ ! -e /dev/vduse/db ] && [ ! -e /sys/bus/vdpa/devices/db ] || fail "del left the devices"
kill -TERM "$nspawn_pid"  # nspawn asks the container's systemd to power off
rc=0; wait "$nspawn_pid" || rc=$?
nspawn_pid=
umount -R "$B"
[ "$rc" -eq 0 ] || { cat nspawn.log | tail -n 20; fail "the container's shutdown: systemd-nspawn exited $rc"; }
note "del in the booted system: unit inactive (not restarted), is-enabled: disabled, db.conf, drop-in and link gone; container powered off (nspawn exit 0)"
rc=0; in_root $X del db 2>/dev/null || rc=$?
[ "$rc" -eq 6 ] || fail "second del exited $rc (want 6)"
# A persistent export that is not running (say its unit failed at boot): del still undoes it.
in_root $X add /srv/images/db.img --name db --persist >/dev/null
kill -TERM "$(in_root $X list --json | python3 -c 'import json,sys; print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')"
for _ in $(seq 1 100); do [ -e /dev/vduse/db ] || break; sleep 0.1; done
in_root $X del db || fail "del of a persistent export that is not running"
[ ! -e "$conf" ] && [ ! -e "$link" ] || fail "del of a stopped persistent export left files"
note "del again: exit 6; a persistent export whose server is not running is undone too (db.conf, link gone)"
# dpkg --purge also removes what --persist wrote, so no enablement link dangles.
in_root $X add /srv/images/db.img --name db --persist >/dev/null
kill -TERM "$(in_root $X list --json | python3 -c 'import json,sys; print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')"
for _ in $(seq 1 100); do [ -e /dev/vduse/db ] || break; sleep 0.1; done
in_root dpkg --purge vduse-export > dpkg.log 2>&1 || { cat dpkg.log; fail "dpkg --purge"; }
[ ! -e "$R/etc/vduse-export" ] && [ ! -e "$link" ] && [ ! -e "$R/usr/sbin/vduse-export" ] || fail "purge left files"
note "dpkg --purge: binary, /etc/vduse-export and the enablement link gone"
expect_no_disks
