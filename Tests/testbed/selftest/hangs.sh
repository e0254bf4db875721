# Self-test of the runner (not run by default): a scenario that never finishes.
# Expected: "FAIL hangs: timed out after 20 s" (the guest-side timeout kills it).
# timeout: 20
echo "hangs: sleeping 1000 s on purpose"
sleep 1000
