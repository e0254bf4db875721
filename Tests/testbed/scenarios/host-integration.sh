# What ships for hosts: the udev rules (run by a real udevd: /dev/disk/by-vduse/NAME and
# /dev/disk/by-id/virtio-SERIAL appear), the systemd unit (systemd-analyze verify), and the
# Type=notify protocol (READY=1 arrives once the disk exists).
# timeout: 300
source "$PROJECT/Tests/testbed/scenario-lib.sh"
X=$VDUSE_EXPORT

# systemd unit: verify a copy whose ExecStart points at the binary we built.
mkdir -p unit
sed "s|/usr/sbin/vduse-export|$X|" "$PROJECT/systemd/vduse-export@.service" > unit/vduse-export@web01.service
# --man=no: Documentation=man:vduse-export(8) is installed by the package (the package scenario
# verifies with it); here the unit comes straight from the tree.
out=$(cd unit && systemd-analyze verify --man=no ./vduse-export@web01.service 2>&1 || true)
[ -z "$out" ] || fail "systemd-analyze verify: $out"
note "systemd-analyze verify: clean"

# udev: a real udevd with our rules.
mkdir -p /run/udev/rules.d
cp "$PROJECT/udev/60-vduse-export.rules" /run/udev/rules.d/
/lib/systemd/systemd-udevd --daemon   # reads the rules at start (udevadm control/settle refuse to work in a chroot)
wait_for() { for _ in $(seq 1 100); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
truncate -s 64M web01.img
dev=$($X add web01.img --serial WEB-01)
# add returns once udev has handled the disk: the links must exist now, without waiting.
[ "$(readlink -f /dev/disk/by-vduse/web01)" = "$dev" ] || fail "/dev/disk/by-vduse/web01 -> $(readlink -f /dev/disk/by-vduse/web01), want $dev"
[ "$(readlink -f /dev/disk/by-id/virtio-WEB-01)" = "$dev" ] || fail "/dev/disk/by-id/virtio-WEB-01 missing"
[ "$(stat -c %a /dev/vduse/web01)" = 600 ] && [ "$(stat -c %a /dev/vduse/control)" = 600 ] || fail "/dev/vduse modes"
printf 'label: dos\n,32M\n,\n' | sfdisk -q "$dev"
wait_for /dev/disk/by-vduse/web01-part2 || true
[ "$(readlink -f /dev/disk/by-vduse/web01-part2)" = "${dev}2" ] || fail "partition link missing: $(ls -l /dev/disk/by-vduse/)"
note "udev: $(ls /dev/disk/by-vduse | tr '\n' ' ')and by-id/virtio-WEB-01"
$X del web01
for _ in $(seq 1 100); do [ -e /dev/disk/by-vduse/web01 ] || break; sleep 0.1; done
[ ! -e /dev/disk/by-vduse/web01 ] || fail "link left after del"
pkill -f systemd-udevd || true

# Type=notify: READY=1 only once the disk exists.
python3 - "$X" "$PWD/web01.img" <<'PY' || fail "sd_notify protocol"
import os, socket, subprocess, sys, glob
binary, image = sys.argv[1], sys.argv[2]
path = os.path.join(os.path.dirname(image), "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([binary, "serve", "--blockdev", f"driver=file,node-name=f0,filename={image}",
                      "--export", "type=vduse-blk,id=e0,node-name=f0,name=notify0,writable=on"],
                     env=env, stdout=subprocess.DEVNULL)
msg = s.recv(4096).decode()
disks = glob.glob("/sys/bus/vdpa/devices/notify0/virtio*/block/vd*")
assert msg == "READY=1", msg
assert disks and os.path.exists("/dev/" + os.path.basename(disks[0])), "READY=1 before the disk existed"
p.terminate()
assert p.wait(60) == 0
print("-- Type=notify: READY=1 after", "/dev/" + os.path.basename(disks[0]), "existed; SIGTERM -> exit 0")
PY
expect_no_disks
