#define _GNU_SOURCE
#include "CVDUSE.h"
#include <errno.h>
#include <signal.h>
#include <string.h>

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
