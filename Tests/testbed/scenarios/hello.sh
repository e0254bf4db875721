# The test bed itself works: the guest kernel has VDUSE and the vdpa management tool sees it.
# Needs none of the project's code.
# timeout: 60
set -euo pipefail

if [[ ! -c /dev/vduse/control ]]; then
  echo "hello: /dev/vduse/control is missing: the vduse module is not loaded or devtmpfs did not create the node" >&2
  exit 1
fi
echo "hello: /dev/vduse/control present"

mgmt=$(vdpa mgmtdev show) || { echo "hello: 'vdpa mgmtdev show' failed (vdpa module or iproute2's vdpa missing?)" >&2; exit 1; }
echo "$mgmt"
if ! grep -qE '^vduse:?([[:space:]]|$)' <<<"$mgmt"; then
  echo "hello: 'vdpa mgmtdev show' does not list the vduse management device" >&2
  exit 1
fi
echo "hello: vdpa lists the vduse management device"

# The results share is writable from the guest (the runner cannot check this itself).
echo "kernel $(uname -r)" >"$RESULTS/hello.txt"
