#define _GNU_SOURCE
#include "CVDUSE.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>
#include <netlink/netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>
#include <linux/vdpa.h>

long cvduse_ioctl(int fd, unsigned long request, void *arg) {
    long r;
    do { r = ioctl(fd, request, arg); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

void cvduse_zero_fill(void *dst, size_t len) {
    unsigned char *p = dst;
    for (; len > 0 && ((uintptr_t)p & 7) != 0; len--) *p++ = 0;
    for (; len >= 32; len -= 32, p += 32) {
        uint64_t *q = (uint64_t *)(void *)p;
        q[0] = 0; q[1] = 0; q[2] = 0; q[3] = 0;
        __asm__ volatile("" : : "r"(p) : "memory");  /* keeps the compiler from making this loop a memset call */
    }
    for (; len > 0; len--) *p++ = 0;
}

long cvduse_create_dev(int control_fd, const char *name, uint32_t device_id, uint64_t features,
                       uint32_t vq_num, uint32_t vq_align, const void *config, uint32_t config_size) {
    struct vduse_dev_config *c = calloc(1, sizeof(*c) + config_size);
    if (!c) return -ENOMEM;
    strncpy(c->name, name, VDUSE_NAME_MAX - 1);
    c->device_id = device_id;
    c->vendor_id = 0;
    c->features = features;
    c->vq_num = vq_num;
    c->vq_align = vq_align;
    c->config_size = config_size;
    memcpy(c->config, config, config_size);
    long r = cvduse_ioctl(control_fd, VDUSE_CREATE_DEV, c);
    free(c);
    return r;
}

long cvduse_set_config(int dev_fd, uint32_t offset, const void *buffer, uint32_t length) {
    struct vduse_config_data *d = calloc(1, sizeof(*d) + length);
    if (!d) return -ENOMEM;
    d->offset = offset;
    d->length = length;
    memcpy(d->buffer, buffer, length);
    long r = cvduse_ioctl(dev_fd, VDUSE_DEV_SET_CONFIG, d);
    free(d);
    return r;
}

/* ---- io_uring ---- */
struct cvduse_ring { struct io_uring ring; };

cvduse_ring *cvduse_ring_create(unsigned entries, int eventfd, int *error) {
    cvduse_ring *r = calloc(1, sizeof(*r));
    if (!r) { *error = -ENOMEM; return NULL; }
    int e = io_uring_queue_init(entries, &r->ring, 0);
    if (e < 0) { free(r); *error = e; return NULL; }
    if (eventfd >= 0) {
        e = io_uring_register_eventfd(&r->ring, eventfd);
        if (e < 0) { io_uring_queue_exit(&r->ring); free(r); *error = e; return NULL; }
    }
    *error = 0;
    return r;
}

void cvduse_ring_destroy(cvduse_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

static struct io_uring_sqe *next_sqe(cvduse_ring *r) { return io_uring_get_sqe(&r->ring); }

int cvduse_ring_prep_readv(cvduse_ring *r, int fd, const struct iovec *iov, unsigned n, uint64_t off, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_readv(s, fd, iov, n, off);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_prep_writev(cvduse_ring *r, int fd, const struct iovec *iov, unsigned n, uint64_t off, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_writev(s, fd, iov, n, off);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_prep_fdatasync(cvduse_ring *r, int fd, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_prep_fallocate(cvduse_ring *r, int fd, int mode, uint64_t off, uint64_t len, uint64_t tag) {
    struct io_uring_sqe *s = next_sqe(r);
    if (!s) return -EBUSY;
    io_uring_prep_fallocate(s, fd, mode, off, len);
    io_uring_sqe_set_data64(s, tag);
    return 0;
}

int cvduse_ring_submit(cvduse_ring *r) {
    int e;
    do { e = io_uring_submit(&r->ring); } while (e == -EINTR);
    return e;
}

unsigned cvduse_ring_reap(cvduse_ring *r, uint64_t *tags, int32_t *results, unsigned max) {
    unsigned n = 0;
    struct io_uring_cqe *cqe;
    while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        tags[n] = io_uring_cqe_get_data64(cqe);
        results[n] = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        n++;
    }
    return n;
}

unsigned cvduse_ring_ready(cvduse_ring *r) { return io_uring_cq_ready(&r->ring); }


int cvduse_ring_wait(cvduse_ring *r, uint64_t *tag, int32_t *result) {
    struct io_uring_cqe *cqe;
    int e;
    do { e = io_uring_wait_cqe(&r->ring, &cqe); } while (e == -EINTR);
    if (e < 0) return e;
    *tag = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
}

/* ---- vdpa generic netlink ---- */
struct ack_state { int error; };

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *err, void *arg) {
    (void)who;
    struct ack_state *st = arg;
    st->error = err->error;
    return NL_STOP;
}

static int on_ack(struct nl_msg *msg, void *arg) {
    (void)msg;
    ((struct ack_state *)arg)->error = 0;
    return NL_STOP;
}

static int on_valid(struct nl_msg *msg, void *arg) { (void)msg; (void)arg; return NL_OK; }

/* libnl error codes are not errnos; map the ones that can happen before the kernel answers. */
static int nl_to_errno(int e) {
    switch (-e) {
    case NLE_NOMEM: return -ENOMEM;
    case NLE_PERM: return -EPERM;
    case NLE_OBJ_NOTFOUND: return -ENOENT;
    default: return -EIO;
    }
}

/* Sends one vdpa command with the given string attributes and waits for the kernel's answer. */
static int vdpa_transact(uint8_t cmd, int attr1, const char *v1, int attr2, const char *v2, int flags) {
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk) return -ENOMEM;
    int ret;
    if ((ret = genl_connect(sk)) < 0) { ret = nl_to_errno(ret); goto out; }
    int family = genl_ctrl_resolve(sk, VDPA_GENL_NAME);
    if (family < 0) { ret = -ENOENT; goto out; }
    struct nl_msg *msg = nlmsg_alloc();
    if (!msg) { ret = -ENOMEM; goto out; }
    if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, flags, cmd, VDPA_GENL_VERSION)
        || (v1 && nla_put_string(msg, attr1, v1) < 0)
        || (v2 && nla_put_string(msg, attr2, v2) < 0)) {
        nlmsg_free(msg); ret = -ENOMEM; goto out;
    }
    struct ack_state st = { .error = 1 }; /* 1 = no answer yet */
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (!cb) { nlmsg_free(msg); ret = -ENOMEM; goto out; }
    nl_cb_err(cb, NL_CB_CUSTOM, on_error, &st);
    nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, &st);
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, on_valid, &st);
    ret = nl_send_auto(sk, msg);
    nlmsg_free(msg);
    if (ret < 0) { nl_cb_put(cb); ret = nl_to_errno(ret); goto out; }
    while (st.error == 1) {
        int r = nl_recvmsgs(sk, cb);
        if (r < 0) { if (st.error == 1) st.error = nl_to_errno(r); break; }
        /* A request with a reply (MGMTDEV_GET): the reply comes first, then the ack. */
    }
    nl_cb_put(cb);
    ret = st.error == 1 ? 0 : st.error;
out:
    nl_socket_free(sk);
    return ret;
}

int cvduse_vdpa_dev_new(const char *mgmtdev, const char *name) {
    return vdpa_transact(VDPA_CMD_DEV_NEW, VDPA_ATTR_MGMTDEV_DEV_NAME, mgmtdev, VDPA_ATTR_DEV_NAME, name,
                         NLM_F_REQUEST | NLM_F_ACK);
}

int cvduse_vdpa_dev_del(const char *name) {
    return vdpa_transact(VDPA_CMD_DEV_DEL, VDPA_ATTR_DEV_NAME, name, 0, NULL, NLM_F_REQUEST | NLM_F_ACK);
}

int cvduse_vdpa_mgmtdev_get(const char *mgmtdev) {
    return vdpa_transact(VDPA_CMD_MGMTDEV_GET, VDPA_ATTR_MGMTDEV_DEV_NAME, mgmtdev, 0, NULL,
                         NLM_F_REQUEST | NLM_F_ACK);
}

const int cvduse_o_direct = O_DIRECT;

#include <fcntl.h>
int cvduse_fallocate(int fd, int mode, uint64_t offset, uint64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length) < 0 ? -errno : 0;
}

#include <spawn.h>
#include <signal.h>
#include <fcntl.h>
#include <unistd.h>
/* Starts `argv` as a daemon: its own session, stdin/stdout on /dev/null, stderr appended to
   `log_path`, `ready_fd` as its fd 3, in directory `dir` (NULL: this one). */
int cvduse_spawn_daemon(const char *path, char *const argv[], int ready_fd, const char *log_path, const char *dir,
                        pid_t *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int e;
    if ((e = posix_spawn_file_actions_init(&fa))) return -e;
    if ((e = posix_spawnattr_init(&attr))) { posix_spawn_file_actions_destroy(&fa); return -e; }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, ready_fd, 3);
    if (dir) posix_spawn_file_actions_addchdir_np(&fa, dir);
    /* A clean start: no signal blocked or ignored because the caller had it so. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    extern char **environ;
    e = posix_spawn(pid, path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return -e;
}

#include <sys/wait.h>
/* Runs argv[0]=path with stdio on /dev/null and waits: its exit status, or -errno. (No
   Foundation Process: it needs a run-loop socket pair, which is not always available.) */
int cvduse_run_quietly(const char *path, char *const argv[]) {
    posix_spawn_file_actions_t fa;
    int e = posix_spawn_file_actions_init(&fa);
    if (e) return -e;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    extern char **environ;
    pid_t pid;
    e = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e) return -e;
    int status;
    while (waitpid(pid, &status, 0) < 0) { if (errno != EINTR) return -errno; }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int cvduse_spawn(const char *path, char *const argv[], int fd3, pid_t *pid) {
    posix_spawn_file_actions_t fa;
    int e = posix_spawn_file_actions_init(&fa);
    if (e) return -e;
    if (fd3 >= 0) posix_spawn_file_actions_adddup2(&fa, fd3, 3);
    extern char **environ;
    e = posix_spawn(pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return -e;
}

int cvduse_wait(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) { if (errno != EINTR) return -errno; }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status);
}

#include <signal.h>
static volatile pid_t forward_to = 0;
static volatile int *forward_flag = 0;
static void forward_sigterm(int sig) {
    (void)sig;
    if (forward_flag) *forward_flag = 1;
    if (forward_to > 0) kill(forward_to, SIGTERM);
}

int cvduse_wait_forwarding_sigterm(pid_t pid, volatile int *terminated) {
    forward_flag = terminated;
    forward_to = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_sigterm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    if (*terminated) kill(pid, SIGTERM);  /* asked to stop before this child started */
    int r = cvduse_wait(pid);
    forward_to = 0;
    return r;
}

/* --- fatal signals: end fast ---------------------------------------------------------------------
   A server that faults or traps must die at once so that its supervisor can start the next one and
   the disk waits no longer than after a SIGKILL. The Swift runtime's own handler (its backtracer)
   stops every thread and symbolicates before the process ends, for many seconds on a slow
   machine, and returns from a signal sent with kill(2), leaving the process running. So the server
   replaces it: one line naming the signal, the raw return addresses, then the default action. */
#include <execinfo.h>
#include <unistd.h>

/* The line is built in one buffer and written with one write(2), so that another thread's log
   line cannot land in the middle of it. */
struct crash_line { char text[256]; size_t length; };

static void crash_put(struct crash_line *line, const char *s) {
    while (*s && line->length < sizeof line->text - 1) line->text[line->length++] = *s++;
}

static void crash_put_number(struct crash_line *line, unsigned long v, unsigned base) {
    char buf[32];
    int i = (int)sizeof buf - 1;
    buf[i] = 0;
    do { buf[--i] = "0123456789abcdef"[v % base]; v /= base; } while (v && i > 0);
    crash_put(line, buf + i);
}

static void crash_handler(int sig, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    struct crash_line line = { .length = 0 };
    crash_put(&line, "vduse-export: fatal signal ");
    crash_put_number(&line, (unsigned long)sig, 10);
    crash_put(&line, " (");
    crash_put(&line, sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
    crash_put(&line, ")");
    if (info && info->si_code <= 0) {
        crash_put(&line, " sent by pid ");
        crash_put_number(&line, (unsigned long)info->si_pid, 10);
    } else if (info && (sig == SIGSEGV || sig == SIGBUS)) {
        crash_put(&line, " at address 0x");
        crash_put_number(&line, (unsigned long)info->si_addr, 16);
    }
    crash_put(&line, " in thread ");
    crash_put_number(&line, (unsigned long)gettid(), 10);
    crash_put(&line, "; return addresses:\n");
    ssize_t written = write(2, line.text, line.length);
    (void)written;
    void *frames[48];
    int n = backtrace(frames, 48);
    backtrace_symbols_fd(frames, n, 2);
    errno = saved;
    /* SA_RESETHAND put the default action back and SA_NODEFER left the signal unblocked: this ends
       the process with the same signal (and a core, where the system collects them). */
    raise(sig);
}

int cvduse_install_crash_handlers(void) {
    /* backtrace() loads the unwinder on first use, which must not happen inside the handler. */
    void *warm[2];
    (void)backtrace(warm, 2);
    static const int signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT, SIGSYS };
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = crash_handler;
        sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signals[i], &sa, NULL) < 0) return -errno;
    }
    return 0;
}

void cvduse_test_fault(uintptr_t address) {
    /* volatile: the store must happen (a plain one before a trap may be dropped as dead). */
    *(volatile uint64_t *)address = 0xdead;
}
