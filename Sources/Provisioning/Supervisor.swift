import CVDUSE
import Foundation
import Glibc
import Kernel

/// Keeps a server running: `add` starts the supervisor, the supervisor starts the server and
/// starts it again (it takes its devices over from their reconnect logs) whenever it ends in
/// anything but a deliberate stop: killed by any signal, crashed, or exited to hand over
/// (`restart`). The server is a separate process, so the supervisor dying takes no disk down.
public enum Supervisor {
    /// Exit statuses of the server that are final: a deliberate stop, or errors a restart would
    /// only repeat (bad options, usage).
    static let final: Set<Int32> = [0, 1, 2, 64]
    /// More than this many unplanned restarts within `window` seconds: give up.
    static let burst = 5
    static let window: TimeInterval = 30

    /// Runs `argv` (argv[0] is the executable). Its first run gets `readyFD` as fd 3 (the
    /// caller of `add` waits on it); later runs get none. Returns the exit status to exit with.
    public static func run(argv: [String], readyFD: Int32?) -> Int32 {
        var args = argv
        var fd3 = readyFD ?? -1
        var crashes: [Date] = []
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        while true {
            var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
            var pid: pid_t = 0
            let r = cvduse_spawn(args[0], &cargs, fd3, &pid)
            for p in cargs { free(p) }
            if fd3 >= 0 {
                close(fd3)  // the server holds it now: `add` sees EOF when the server closes it
                fd3 = -1
                args = withoutReadyFD(args)
            }
            guard r == 0 else {
                FileHandle.standardError.write(Data("vduse-export supervise: cannot start \(args[0]): \(String(cString: strerror(-r)))\n".utf8))
                return 1
            }
            let status = cvduse_wait(pid)
            if status == ExportServer.handOverExitStatus {
                note("server \(pid) handed over; starting the new one")
                continue
            }
            if status >= 0 && status < 256 && final.contains(status) { return status }
            let now = Date()
            crashes = crashes.filter { now.timeIntervalSince($0) < window } + [now]
            guard crashes.count <= burst else {
                note("server \(pid) ended (\(describe(status))) \(crashes.count) times within \(Int(window)) s: giving up")
                return 1
            }
            note("server \(pid) ended (\(describe(status))): starting it again")
            usleep(100_000)
        }
    }

    static func withoutReadyFD(_ args: [String]) -> [String] {
        var out: [String] = []
        var skip = false
        for a in args {
            if skip { skip = false; continue }
            if a == "--ready-fd" { skip = true; continue }
            if a.hasPrefix("--ready-fd=") { continue }
            out.append(a)
        }
        return out
    }

    static func describe(_ status: Int32) -> String {
        status >= 256 ? "signal \(status - 256)" : "exit status \(status)"
    }

    private static func note(_ message: String) {
        FileHandle.standardError.write(Data("vduse-export supervise: \(message)\n".utf8))
    }
}
