# Self-test of the runner (not run by default): the guest stops responding, so no exit status
# ever comes back. Stopping the guest-side `timeout` (our parent) disables its kill, as a hung
# kernel would. Expected: "FAIL wedged: hung/killed after N s" (N = 10 + TESTBED_MARGIN), from
# the host-side timeout around qemu.
# timeout: 10
echo "wedged: stopping the guest's timeout process ($PPID) and sleeping"
kill -STOP "$PPID"
sleep 1000
