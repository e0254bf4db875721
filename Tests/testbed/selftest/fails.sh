# Self-test of the runner (not run by default): a scenario that fails.
# Expected: "FAIL fails: exit 1", with this output shown.
# timeout: 30
echo "fails: this scenario exits 1 on purpose"
exit 1
