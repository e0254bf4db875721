#define _GNU_SOURCE
#include "CConfine.h"
#include <errno.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* capget/capset through syscall(2): glibc has no wrapper and libcap would be one more library
   for two calls. Version 3 carries 64 bits in two 32-bit words. */
static int get_caps(struct __user_cap_data_struct data[2]) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    return syscall(SYS_capget, &header, data) == 0 ? 0 : -errno;
}

uint64_t cconfine_effective_capabilities(void) {
    struct __user_cap_data_struct data[2];
    if (get_caps(data)) return 0;
    return (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
}

int cconfine_limit_capabilities(uint64_t keep) {
    /* The bounding set first: dropping from it needs CAP_SETPCAP, which goes next. */
    for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
        /* (a cap already out of the set needs no CAP_SETPCAP, e.g. under a unit's bounding set) */
        if ((keep & (1ULL << cap)) || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) return -errno;
    struct __user_cap_data_struct data[2];
    int e = get_caps(data);
    if (e) return e;
    for (int i = 0; i < 2; i++) {
        uint32_t mask = (uint32_t)(keep >> (32 * i));
        data[i].permitted &= mask;
        data[i].effective &= mask;
        data[i].inheritable = 0;
    }
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -errno;
}

/* Names for the SIGSYS line, resolved before the filter is loaded: the handler may not allocate. */
#define NAMED_CALLS 512
static const char *call_names[NAMED_CALLS];

static void put(char *line, size_t *length, size_t capacity, const char *s) {
    while (*s && *length < capacity - 1) line[(*length)++] = *s++;
}

static void put_number(char *line, size_t *length, size_t capacity, unsigned long v) {
    char digits[24];
    int i = (int)sizeof digits - 1;
    digits[i] = 0;
    do { digits[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 0);
    put(line, length, capacity, digits + i);
}

static void forbidden_call_handler(int sig, siginfo_t *info, void *context) {
    (void)context;
    char line[320];
    size_t n = 0;
    int nr = info ? info->si_syscall : -1;
    put(line, &n, sizeof line, "vduse-export: system call ");
    put(line, &n, sizeof line, nr >= 0 && nr < NAMED_CALLS && call_names[nr] ? call_names[nr] : "?");
    put(line, &n, sizeof line, " (");
    put_number(line, &n, sizeof line, (unsigned long)nr);
    put(line, &n, sizeof line, ") in thread ");
    put_number(line, &n, sizeof line, (unsigned long)gettid());
    put(line, &n, sizeof line, " is not in the serving phase's allow-list (seccomp): ending the process\n");
    ssize_t written = write(2, line, n);
    (void)written;
    /* SA_RESETHAND put the default action back and SA_NODEFER left SIGSYS unblocked: the
       process ends with SIGSYS, which a supervisor restarts like any crash. */
    raise(sig);
}

int cconfine_install_filter(const char *const *names, int count, const char *const *own_names, int own_count,
                            int *unknown) {
    *unknown = 0;
    for (int nr = 0; nr < NAMED_CALLS; nr++) {
        if (call_names[nr]) continue;
        call_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = forbidden_call_handler;
    action.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, NULL)) return -errno;

    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_TRAP);
    if (!filter) return -ENOMEM;
    /* no_new_privs is set by seccomp_load (the default of SCMP_FLTATR_CTL_NNP); TSYNC puts the
       filter, and no_new_privs with it, on every thread at once, or fails as a whole. */
    int e = seccomp_attr_set(filter, SCMP_FLTATR_CTL_TSYNC, 1);
    for (int i = 0; !e && i < count; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR) { (*unknown)++; continue; }
        e = seccomp_rule_add(filter, SCMP_ACT_ALLOW, nr, 0);
    }
    for (int i = 0; !e && i < own_count; i++) {
        int nr = seccomp_syscall_resolve_name(own_names[i]);
        if (nr == __NR_SCMP_ERROR) { (*unknown)++; continue; }
        e = seccomp_rule_add(filter, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    }
    if (!e) e = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ? -errno : 0;
    if (!e) e = seccomp_load(filter);
    seccomp_release(filter);
    return e;
}

int cconfine_resolve(const char *name) {
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR ? -1 : nr;
}

long cconfine_forbidden_call(void) {
    return syscall(SYS_swapoff, NULL);
}
