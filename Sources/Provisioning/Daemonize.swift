import Core
import Kernel
import Foundation
import Glibc

/// `serve --daemonize` (qemu-storage-daemon's option): this process starts the server again as
/// a daemon (own session, stdio on /dev/null, same working directory until it runs) with a
/// readiness pipe as `--ready-fd 3`, and waits for the pipe to close. The daemon closes it once
/// every export exists and the pid file is written, or writes `error: STATUS MESSAGE` and exits.
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
        let text = String(decoding: Subprocess.readToEOF(reader.rawValue), as: UTF8.self)
        if let range = text.hasPrefix("error: ") ? text.range(of: "error: ") : text.range(of: "\nerror: ") {
            // "STATUS MESSAGE"; the message may span lines (QEMU's lock hint).
            let rest = text[range.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
            let parts = rest.split(separator: " ", maxSplits: 1)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            if parts.count == 2, let code = Int32(parts[0]) { return .failed(status: code, message: String(parts[1])) }
            return .failed(status: ExitStatus.kernel.rawValue, message: rest)
        }
        // EOF without an error: ready, unless the daemon died on the way (a crash writes nothing).
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            return .failed(status: ExitStatus.kernel.rawValue, message: "the daemon exited before it was ready")
        }
        let exports = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(ExportStatus.self, from: Data($0.utf8)) }
        return .running(pid: pid, exports: exports)
    }
}
