/* Process spawning and waiting (posix_spawn's session and fd options need _GNU_SOURCE). */
#define _GNU_SOURCE
#include "CVDUSE.h"
#include <errno.h>
#include <string.h>
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
