#ifndef CCONFINE_H
#define CCONFINE_H
#include <stdint.h>

/* The serving phase's confinement (Kernel/Confinement.swift): capabilities, no_new_privs and a
   seccomp allow-list. Each call returns 0 or -errno. */

/* Keeps only the capabilities whose bits are set in `keep` (bit n = capability n) in this
   thread's permitted, effective and bounding sets; clears the inheritable and ambient sets.
   Threads this thread starts afterwards inherit the reduced sets. */
int cconfine_limit_capabilities(uint64_t keep);

/* This thread's effective capability set (bit n = capability n), or 0 on error. */
uint64_t cconfine_effective_capabilities(void);

/* Sets no_new_privs, then loads a filter that allows the `count` named system calls and traps
   every other one (SIGSYS: a log line naming the call on fd 2, then the process ends by
   SIGSYS), on every thread of the process (TSYNC). The `own_count` calls named in `own_names`
   (kill, tgkill) are allowed only with this process as their first argument. Names the
   running architecture does not have are skipped; their number is stored in *unknown. */
int cconfine_install_filter(const char *const *names, int count, const char *const *own_names, int own_count,
                            int *unknown);

/* The system call number of `name` on this architecture, or -1 (libseccomp's table). */
int cconfine_resolve(const char *name);

/* Test only: a system call that no allow-list of ours contains (swapoff(NULL): EFAULT/EPERM
   when not confined, so harmless). Returns its result. */
long cconfine_forbidden_call(void);

#endif
