/*
 * Kernel interface for vduse-export: only what Swift cannot express.
 *  - ioctl numbers (function-like macros in the UAPI headers) as constants;
 *  - a non-variadic ioctl and a few wrappers for structs with flexible array members;
 *  - process spawning and the crash handlers (need _GNU_SOURCE or async-signal-safe C).
 * Memory barriers are in CBarriers, liburing in CIOUring, libnl (vdpa) in CVDPANetlink.
 * The UAPI structs themselves (vduse_dev_request, vduse_vq_info, ...) come from <linux/vduse.h>.
 */
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/ioctl.h>
#include <linux/vduse.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/fs.h>

/* ---- ioctl numbers ---- */
static const unsigned long CVDUSE_GET_API_VERSION = VDUSE_GET_API_VERSION;
static const unsigned long CVDUSE_SET_API_VERSION = VDUSE_SET_API_VERSION;
static const unsigned long CVDUSE_DESTROY_DEV = VDUSE_DESTROY_DEV;
static const unsigned long CVDUSE_IOTLB_GET_FD = VDUSE_IOTLB_GET_FD;
static const unsigned long CVDUSE_DEV_GET_FEATURES = VDUSE_DEV_GET_FEATURES;
static const unsigned long CVDUSE_DEV_INJECT_CONFIG_IRQ = VDUSE_DEV_INJECT_CONFIG_IRQ;
static const unsigned long CVDUSE_VQ_SETUP = VDUSE_VQ_SETUP;
static const unsigned long CVDUSE_VQ_GET_INFO = VDUSE_VQ_GET_INFO;
static const unsigned long CVDUSE_VQ_SETUP_KICKFD = VDUSE_VQ_SETUP_KICKFD;
static const unsigned long CVDUSE_VQ_INJECT_IRQ = VDUSE_VQ_INJECT_IRQ;
static const unsigned long CVDUSE_BLKGETSIZE64 = BLKGETSIZE64;
static const unsigned long CVDUSE_BLKDISCARD = BLKDISCARD;
static const unsigned long CVDUSE_BLKZEROOUT = BLKZEROOUT;
static const unsigned long CVDUSE_BLKSSZGET = BLKSSZGET;

/* Zeroes len bytes with plain 8-byte stores, never `rep stosb`: glibc's memset uses that
   instruction above 2 KiB on CPUs with ERMS, and QEMU's TCG emulates it one byte per iteration
   (1.7 ms per MiB in the test bed against 0.12 ms for stores; docs/performance.md). Same speed as
   memset on hardware. */
void cvduse_zero_fill(void *dst, size_t len);

/* O_DIRECT needs _GNU_SOURCE, which only the .c file defines. */
extern const int cvduse_o_direct;

/* fallocate(2) (needs _GNU_SOURCE). 0 or -errno. */
int cvduse_fallocate(int fd, int mode, uint64_t offset, uint64_t length);

/* posix_spawn in a new session (needs _GNU_SOURCE): stdin/stdout /dev/null, stderr appended to
   log_path, ready_fd becomes fd 3, working directory dir (NULL: the caller's; "/" pins no file
   system). 0 or -errno. */
int cvduse_spawn_daemon(const char *path, char *const argv[], int ready_fd, const char *log_path, const char *dir,
                        pid_t *pid);

/* Runs a program with stdio on /dev/null and waits: exit status, or -errno. */
int cvduse_run_quietly(const char *path, char *const argv[]);
/* Starts argv[0]=path with this process's stdio; `fd3` becomes its fd 3 (-1: none). Returns 0 and
   *pid, or -errno. (For the supervisor, which waits for it with cvduse_wait.) */
int cvduse_spawn(const char *path, char *const argv[], int fd3, pid_t *pid);
/* Waits for `pid`; returns its exit status (0-255), or 256 + signal number if a signal ended it,
   or -errno. */
int cvduse_wait(pid_t pid);
/* cvduse_wait, and while waiting a SIGTERM to this process is passed on to `pid` and sets
   *terminated (so a supervisor being stopped does not start its server again). */
int cvduse_wait_forwarding_sigterm(pid_t pid, volatile int *terminated);

/* Replaces the handlers of the fatal signals (SEGV, BUS, ILL, FPE, TRAP, ABRT, SYS), the Swift
   runtime's backtracer among them, with one that writes a line naming the signal and the raw
   return addresses to stderr and ends the process with that signal at once. 0 or -errno. */
int cvduse_install_crash_handlers(void);

/* Test only (TestCrash): a store to `address`, which the compiler cannot drop. */
void cvduse_test_fault(uintptr_t address);

/* ioctl(2) without varargs. Returns the result, or -errno (EINTR is retried). */
long cvduse_ioctl(int fd, unsigned long request, void *arg);
static inline long cvduse_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return cvduse_ioctl(fd, request, (void *)value);
}

/* VDUSE_CREATE_DEV: the config struct ends in a flexible array holding the device config space. */
long cvduse_create_dev(int control_fd, const char *name, uint32_t device_id, uint64_t features,
                       uint32_t vq_num, uint32_t vq_align, const void *config, uint32_t config_size);
/* VDUSE_DEV_SET_CONFIG: header + buffer in one allocation. */
long cvduse_set_config(int dev_fd, uint32_t offset, const void *buffer, uint32_t length);
