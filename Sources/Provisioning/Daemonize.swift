import Core
import Kernel
import Foundation
import Glibc

/// `serve --daemonize` (qemu-storage-daemon's option): this process starts the server again as
/// a daemon (own session, stdio on /dev/null, same working directory until it runs) with a
/// readiness pipe as `--ready-fd 3`, and waits for the pipe to close. The daemon closes it once
/// every export exists and the pid file is written, or sends a `ReadinessMessage.failed` and exits.
public enum Daemonize {
    public enum Outcome: Sendable {
        /// Running: the daemon's pid and its exports.
        case running(pid: pid_t, exports: [ExportStatus])
        case failed(status: Int32, message: String)
    }

    /// `arguments` are the server's (argv[0] included, kept: it decides the personality).
    public static func start(arguments: [String]) -> Outcome {
        // The daemon gets the write end only as its fd 3.
        let pipe: Subprocess.Pipe
        do { pipe = try Subprocess.Pipe() } catch {
            return .failed(status: ExitStatus.kernel.rawValue, message: "pipe: \(error.reason)")
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
        let argv = arguments + ["--ready-fd", "3"]
        let pid: pid_t
        do {
            pid = try Subprocess.spawnDaemon(exe, argv: argv, fd3: pipe.write.rawValue, log: "/dev/null", directory: nil)
        } catch {
            return .failed(status: ExitStatus.kernel.rawValue, message: "cannot start the daemon: \(error.reason)")
        }
        let reader = pipe.readEnd()
        var lines = LineReader(fd: reader.rawValue)
        var exports: [ExportStatus] = []
        while let line = try? lines.next() {
            switch try? JSONDecoder().decode(ReadinessMessage.self, from: Data(line)) {
            case let .ready(status)?:
                exports.append(status)
            case let .failed(failure)?:
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                return .failed(status: failure.status, message: failure.message)
            case nil:
                continue
            }
        }
        // EOF without an error: ready, unless the daemon died on the way (a crash writes nothing).
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            return .failed(status: ExitStatus.kernel.rawValue, message: "the daemon exited before it was ready")
        }
        return .running(pid: pid, exports: exports)
    }
}
