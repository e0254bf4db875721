import CConfine
import Glibc

/// The capabilities a serving process may keep (capability(7) numbers).
public enum Capability: Int32, Sendable, CaseIterable {
    /// Opening images, overlays and sockets that belong to other users (QMP's run-time
    /// blockdev-add, a restarted export's image): root without it is only their owner.
    case dacOverride = 1
    /// Searching directories of other users on the way to those files.
    case dacReadSearch = 2
    /// vdpa netlink DEV_NEW and DEV_DEL (GENL_ADMIN_PERM): binding a run-time export and
    /// deleting devices at exit.
    case netAdmin = 12

    static func mask(_ set: Set<Capability>) -> UInt64 { set.reduce(0) { $0 | 1 << UInt64($1.rawValue) } }

    /// The name capabilities(7) gives it.
    public var name: String {
        switch self {
        case .dacOverride: "cap_dac_override"
        case .dacReadSearch: "cap_dac_read_search"
        case .netAdmin: "cap_net_admin"
        }
    }
}

/// What the serving process gives up once its devices exist: every capability but `keep`, the
/// right to gain privileges through exec (no_new_privs), and every system call outside
/// `servingSystemCalls` (seccomp; a call outside the list logs its name and ends the process by
/// SIGSYS, which the supervisor restarts like a crash).
public enum Confinement {
    /// Reduces this thread to `keep`; the threads it starts afterwards inherit that. Call before
    /// the first other thread exists (capabilities are per thread).
    public static func limitCapabilities(to keep: Set<Capability>) throws(SystemError) {
        try negErrno("capset", cconfine_limit_capabilities(Capability.mask(keep)))
    }

    /// This thread's effective capabilities (for the log line and tests).
    public static var effectiveCapabilities: Set<Capability> {
        let bits = cconfine_effective_capabilities()
        return Set(Capability.allCases.filter { bits & (1 << UInt64($0.rawValue)) != 0 })
    }

    /// Loads the allow-list on every thread of the process, no_new_privs with it.
    public static func restrictSystemCalls(to names: [String] = servingSystemCalls,
                                           ownProcessOnly: [String] = signalCalls) throws(SystemError) {
        var unknown: Int32 = 0
        let r = withCStringArray(names) { all in
            withCStringArray(ownProcessOnly) { own in
                cconfine_install_filter(constant(all), Int32(names.count), constant(own), Int32(ownProcessOnly.count), &unknown)
            }
        }
        try negErrno("seccomp_load", r)
    }

    /// The C side takes `const char *const *`: the same array, read only.
    private static func constant(_ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> UnsafePointer<UnsafePointer<CChar>?> {
        UnsafeRawPointer(array).assumingMemoryBound(to: UnsafePointer<CChar>?.self)
    }

    /// Signals the serving process may send, to itself only (raise, pthread_kill, the crash
    /// handlers): as root it could otherwise signal any root process.
    public static let signalCalls = ["kill", "tgkill"]

    /// The system call number of `name` on this architecture (nil: libseccomp does not know it).
    public static func number(of name: String) -> Int32? {
        let nr = cconfine_resolve(name)
        return nr < 0 ? nil : nr
    }

    /// Test only (the `syscall` kind of TestCrash): a call the allow-list does not contain.
    public static func makeForbiddenCall() -> Int { cconfine_forbidden_call() }

    /// The system calls of the serving phase: ours (io_uring, epoll, eventfd, VDUSE ioctls, vdpa
    /// netlink, files and records), the Swift runtime's and glibc's (threads, memory, signals,
    /// time), and those of the libraries that serve network images (libnbd: sockets, name
    /// lookups; librbd/librados: their messenger threads). Not in it: exec, ptrace, mount,
    /// module, bpf, key, set*id, chroot, reboot, swap, kexec, perf and the like.
    public static let servingSystemCalls: [String] = [
        // files and records
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
        "open", "openat", "openat2", "close", "close_range", "lseek", "fstat", "stat", "lstat", "newfstatat", "statx",
        "statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "getcwd",
        "chdir", "fchdir", "mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link",
        "linkat", "symlink", "symlinkat", "ftruncate", "truncate", "fallocate", "fsync", "fdatasync", "sync_file_range",
        "syncfs", "flock", "fcntl", "dup", "dup2", "dup3", "pipe", "pipe2", "ioctl", "fchmod", "fchmodat", "chmod",
        "fchown", "fchownat", "umask", "utimensat", "fadvise64", "readahead", "copy_file_range", "splice", "sendfile", "sync", "utimes",
        "memfd_create", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "getxattr", "fgetxattr", "lgetxattr",
        // waiting and waking
        "io_uring_setup", "io_uring_enter", "io_uring_register", "epoll_create", "epoll_create1", "epoll_ctl",
        "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "poll", "ppoll", "select", "pselect6",
        "timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd4", "futex", "futex_waitv",
        "set_robust_list", "get_robust_list", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres",
        "gettimeofday", "time", "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
        "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min", "getpriority", "setpriority",
        "ioprio_get", "ioprio_set",
        // memory
        "mmap", "munmap", "mremap", "mprotect", "madvise", "brk", "mlock", "munlock", "mincore", "membarrier", "msync", "mlock2",
        "get_mempolicy", "set_mempolicy", "mbind",
        // threads, signals, process
        "clone", "clone3", "set_tid_address", "rseq", "exit", "exit_group", "gettid", "getpid", "getppid",
        "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid", "getpgrp", "getsid",
        "capget", "prctl", "arch_prctl", "uname", "sysinfo", "getrusage", "getrlimit", "prlimit64", "times",
        "getrandom", "getpgid", "getitimer", "setitimer", "alarm", "pause", "timer_create", "timer_settime",
        "timer_gettime", "timer_delete", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigpending",
        "rt_sigsuspend", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack",
        "wait4", "waitid", "restart_syscall", "getcpu", "pidfd_open",
        // sockets: QMP, readiness, journald, netlink (vdpa), NBD and Ceph over TCP or unix sockets
        "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "shutdown", "getsockname",
        "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
        "recvmmsg",
    ]
}
