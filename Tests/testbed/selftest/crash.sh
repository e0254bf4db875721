# Self-test of the runner (not run by default): the guest kernel crashes mid-scenario.
# Expected: "FAIL crash: guest stopped without an exit status" with the console tail.
# timeout: 30
echo "crash: crashing the guest kernel on purpose"
sync
echo c >/proc/sysrq-trigger
sleep 30
