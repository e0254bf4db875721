import CVDUSE
import Glibc

/// Starting other programs, in one place: argv turned into C strings once, pipes owned by
/// `UniqueFD`, and failures as `SystemError`s that keep the errno. Not Foundation's `Process`:
/// its run loop needs a socket pair that could not be created in the test bed's chroot, and
/// then it hung.
package enum Subprocess {
    /// A pipe, both ends close-on-exec (a child gets an end only where it is dup2'ed, which clears
    /// the flag there), so the reader sees EOF once every writer closed it or died.
    package struct Pipe: ~Copyable {
        package let read: UniqueFD
        package let write: UniqueFD

        package init() throws(SystemError) {
            var fds: [Int32] = [0, 0]
            try sys("pipe") { Glibc.pipe(&fds) }  // pipe2 is not in Glibc's module without _GNU_SOURCE
            read = UniqueFD(taking: fds[0])
            write = UniqueFD(taking: fds[1])
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        }

        /// Closes the write end (once a child has its copy) and keeps the read end.
        package consuming func readEnd() -> UniqueFD { read }
    }

    /// Starts `executable` (argv[0] included in `argv`) with this process's stdio; `fd3` becomes
    /// its fd 3 (-1: none). The caller waits for it.
    package static func spawn(_ executable: String, argv: [String], fd3: Int32 = -1) throws(SystemError) -> pid_t {
        var pid: pid_t = 0
        let r = withCStringArray(argv) { cvduse_spawn(executable, $0, fd3, &pid) }
        try negErrno("spawn \(executable)", r)
        return pid
    }

    /// Starts `executable` as a daemon: a new session, stdin and stdout on /dev/null, stderr
    /// appended to `log`, `fd3` as its fd 3, working directory `directory` (nil: ours).
    package static func spawnDaemon(_ executable: String, argv: [String], fd3: Int32, log: String,
                                    directory: String?) throws(SystemError) -> pid_t {
        var pid: pid_t = 0
        let r = withCStringArray(argv) { cvduse_spawn_daemon(executable, $0, fd3, log, directory, &pid) }
        try negErrno("spawn \(executable)", r)
        return pid
    }

    /// Runs a helper program (modprobe) with stdio on /dev/null and waits: its exit status.
    package static func runQuietly(_ path: String, _ arguments: [String]) throws(SystemError) -> Int32 {
        let r = withCStringArray([path] + arguments) { cvduse_run_quietly(path, $0) }
        return try negErrno("run \(path)", r)
    }

    /// Runs `path` with stdin and stdout on /dev/null and its stderr captured, and waits: the
    /// exit status (128 + signal if a signal ended it) and what it wrote to stderr.
    package static func runCapturingStderr(_ path: String, _ arguments: [String])
        throws(SystemError) -> (status: Int32, stderr: String) {
        let pipe = try Pipe()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipe.write.rawValue, 2)
        var pid: pid_t = 0
        let r = withCStringArray([path] + arguments) { posix_spawn(&pid, path, &actions, nil, $0, environ) }
        let reader = pipe.readEnd()  // the child's stderr is the only writer left
        guard r == 0 else { throw SystemError("posix_spawn(\(path))", errno: r) }
        let output = readToEOF(reader.rawValue)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: output, as: UTF8.self))
    }

    /// Everything `fd` yields until EOF or an error (EINTR retried).
    package static func readToEOF(_ fd: Int32) -> [UInt8] {
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n > 0 { output += buffer[0..<n] } else if n < 0 && errno == EINTR { continue } else { break }
        }
        return output
    }
}
