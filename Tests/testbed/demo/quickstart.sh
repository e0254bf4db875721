# The README's quick start, run as a user would on a host with VDUSE, inside the test bed.
# timeout: 300
set -euo pipefail
cd "$(mktemp -d /tmp/demo.XXXXXX)"
export PATH="$(dirname "$VDUSE_EXPORT"):$PATH"
show() { echo "# $*"; "$@"; }
truncate -s 1G web01.img
echo "# truncate -s 1G web01.img"
echo "# vduse-export add web01.img"
DEV=$(vduse-export add web01.img)
echo "$DEV"
show mkfs.ext4 -q "$DEV"
show mkdir -p /mnt/web01
show mount "$DEV" /mnt/web01
echo "# echo hello > /mnt/web01/hello.txt"; echo hello > /mnt/web01/hello.txt
show vduse-export list
echo "# vduse-export del web01"
vduse-export del web01 || echo "(exit status $?: refused while mounted)"
show umount /mnt/web01
show vduse-export del web01
show vduse-export list
echo "# vduse-export add web01.img --json"
vduse-export add web01.img --json
show vduse-export del web01
