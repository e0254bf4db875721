# Self-test of the runner (not run by default): the scenario interface documented in
# Tests/testbed/run holds. Expected: PASS.
# timeout: 60
set -euo pipefail
bad=0
check() { # DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then echo "ok   $what"; else echo "FAIL $what"; bad=1; fi
}
check "running as root"                         test "$(id -u)" = 0
check "PROJECT is the repository"               test -x "$PROJECT/Tests/testbed/run"
check "PROJECT is read-only"                    sh -c '! touch "$PROJECT/.testbed-write-probe"'
check "VDUSE_EXPORT is PROJECT/<build>/vduse-export" sh -c 'case "$VDUSE_EXPORT" in "$PROJECT"/*/vduse-export) ;; *) exit 1;; esac'
check "RESULTS is writable"                     sh -c 'echo x >"$RESULTS/env-probe" && rm "$RESULTS/env-probe"'
check "cwd is empty"                            test -z "$(ls -A .)"
check "cwd is on tmpfs"                         sh -c 'test "$(stat -f -c %T .)" = tmpfs'
check "/tmp is the guest's tmpfs"               sh -c 'test "$(stat -f -c %T /tmp)" = tmpfs'
check "host root is read-only"                  sh -c '! touch /usr/.testbed-write-probe'
check "stdin is /dev/null"                      sh -c 'test "$(readlink /proc/self/fd/0)" = /dev/null'
check "TESTBED_ACCEL is kvm or tcg"             sh -c 'case "$TESTBED_ACCEL" in kvm|tcg) ;; *) exit 1;; esac'
check "TESTBED_SCENARIO is this scenario"       test "$TESTBED_SCENARIO" = env
for m in vdpa vduse virtio_vdpa virtio_blk; do
  check "module $m loaded"                      test -d "/sys/module/$m"
done
check "module tree usable for more modules"     modprobe -d "$PROJECT/.testbed/kroot" ext4
check "kernel is the test-bed kernel"           test -d "$PROJECT/.testbed/kroot/lib/modules/$(uname -r)"
exit "$bad"
