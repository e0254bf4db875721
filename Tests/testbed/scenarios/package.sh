# The Debian package as a host gets it: the .deb from scripts/build-deb installs with dpkg -i into
# a writable copy of the guest root (an overlayfs over the read-only host root, so dpkg checks the
# declared Depends against a real package database), and everything below runs the INSTALLED
# binary, with /opt/swift hidden: add, list, resize (grow, shrink, refused under a mounted ext4;
# the kernel's /sys/block/vdX/size follows, data below the new end intact), man -l, bash
# completion, and add --persist / del (files, drop-in, unit enablement via systemctl --root, and
# the unit's own ExecStart line bringing the export back with its name, serial and by-vduse link).
# Not proven here: a real boot under systemd as PID 1; the ordering is checked by
# systemd-analyze verify on the fstab generator's output, not by watching a boot.
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
cleanup() {
    in_root udevadm control --exit 2>/dev/null || true
    for n in web01 db; do in_root vduse-export del --force "$n" 2>/dev/null || true; done  # after a failure only
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
truncate -s 32M "$R/tmp/db.img"
dbdev=$(in_root $X add /tmp/db.img --name db --serial DB-0001 --persist) || fail "add --persist"
conf=$R/etc/vduse-export/db.conf
dropin=$R/etc/systemd/system/vduse-export@db.service.d/persist.conf
link=$R/etc/systemd/system/local-fs.target.wants/vduse-export@db.service
grep -q '^VDUSE_EXPORT_ARGS=.*filename=/tmp/db.img.*name=db,.*serial=DB-0001' "$conf" || fail "db.conf: $(cat "$conf")"
grep -qx 'RequiresMountsFor=/tmp/db.img' "$dropin" || fail "drop-in: $(cat "$dropin" 2>&1)"
[ "$(readlink "$link")" = /lib/systemd/system/vduse-export@.service ] || fail "enablement link: $(ls -l "$link" 2>&1)"
[ "$(systemctl --root="$R" is-enabled vduse-export@db.service)" = enabled ] || fail "systemctl --root is-enabled"
verify=$(in_root systemd-analyze verify vduse-export@db.service 2>&1) || true
[ -z "$verify" ] || fail "systemd-analyze verify vduse-export@db.service: $verify"
sums=$(md5sum "$conf" "$dropin")
[ "$(in_root $X add /tmp/db.img --name db --serial DB-0001 --persist)" = "$dbdev" ] || fail "second add --persist"
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

# "Reboot": stop the server (the export goes, the configuration stays), then run the unit's own
# ExecStart line with its EnvironmentFile, as systemd would.
pid=$(in_root $X list --json | python3 -c 'import json,sys; print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')
kill -TERM "$pid"
for _ in $(seq 1 100); do [ -e /dev/vduse/db ] || break; sleep 0.1; done
[ ! -e /dev/vduse/db ] && [ -f "$conf" ] || fail "after stopping the server: /dev/vduse/db still there or db.conf gone"
exec_start=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/vduse-export@.service" | sed 's/%i/db/g')
# systemd takes the line after "VDUSE_EXPORT_ARGS=" as the value and splits an unquoted
# $VDUSE_EXPORT_ARGS in ExecStart at whitespace, as bash does below.
args=$(sed -n 's/^VDUSE_EXPORT_ARGS=//p' "$conf")
in_root env VDUSE_EXPORT_ARGS="$args" bash -c "exec $exec_start" > unit.out 2> unit.err &
unit_pid=$!
for _ in $(seq 1 300); do [ -s unit.out ] && break; kill -0 $unit_pid 2>/dev/null || break; sleep 0.1; done
read -r _ name newdev < unit.out || fail "the unit's ExecStart did not bring db back: $(cat unit.err)"
[ "$name" = db ] && [ -b "$newdev" ] || fail "unit ready line: $(cat unit.out)"
[ "$(cat /sys/block/$(basename "$newdev")/serial)" = DB-0001 ] || fail "serial after the unit start: $(cat /sys/block/$(basename "$newdev")/serial)"
for _ in $(seq 1 50); do [ -e /dev/disk/by-vduse/db ] && break; sleep 0.1; done
[ "$(readlink -f /dev/disk/by-vduse/db)" = "$newdev" ] || fail "/dev/disk/by-vduse/db after the unit start"
in_root $X resize db 48M >/dev/null || fail "resize through the unit's QMP socket"
note "the unit's ExecStart ($exec_start) brought back db as $newdev, serial DB-0001, /dev/disk/by-vduse/db"

in_root $X del db || fail "del of the persistent export"
rc=0; wait $unit_pid || rc=$?
[ "$rc" -eq 0 ] || fail "the unit's server exited $rc after del"
[ ! -e "$conf" ] && [ ! -e "$dropin" ] && [ ! -e "$link" ] || fail "del left: $(ls "$conf" "$dropin" "$link" 2>&1)"
[ "$(systemctl --root="$R" is-enabled vduse-export@db.service 2>/dev/null)" = disabled ] || fail "still enabled after del"
rc=0; in_root $X del db 2>/dev/null || rc=$?
[ "$rc" -eq 6 ] || fail "second del exited $rc (want 6)"
# A persistent export that is not running (say its unit failed at boot): del still undoes it.
in_root $X add /tmp/db.img --name db --persist >/dev/null
kill -TERM "$(in_root $X list --json | python3 -c 'import json,sys; print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')"
for _ in $(seq 1 100); do [ -e /dev/vduse/db ] || break; sleep 0.1; done
in_root $X del db || fail "del of a persistent export that is not running"
[ ! -e "$conf" ] && [ ! -e "$link" ] || fail "del of a stopped persistent export left files"
note "del: server stopped (exit 0), db.conf, drop-in and link gone (is-enabled: disabled); again: exit 6; a stopped persistent export is undone too"
# dpkg --purge also removes what --persist wrote, so no enablement link dangles.
in_root $X add /tmp/db.img --name db --persist >/dev/null
kill -TERM "$(in_root $X list --json | python3 -c 'import json,sys; print([e["pid"] for e in json.load(sys.stdin) if e["name"] == "db"][0])')"
for _ in $(seq 1 100); do [ -e /dev/vduse/db ] || break; sleep 0.1; done
in_root dpkg --purge vduse-export > dpkg.log 2>&1 || { cat dpkg.log; fail "dpkg --purge"; }
[ ! -e "$R/etc/vduse-export" ] && [ ! -e "$link" ] && [ ! -e "$R/usr/sbin/vduse-export" ] || fail "purge left files"
note "dpkg --purge: binary, /etc/vduse-export and the enablement link gone"
expect_no_disks
