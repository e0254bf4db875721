import CVDUSE
import Foundation
import Glibc
import Kernel

/// Keeps a server running: `add` starts the supervisor, the supervisor starts the server and
/// starts it again (it takes its devices over from their reconnect logs) whenever it ends in
/// anything but a deliberate stop: killed by any signal, crashed, or exited to hand over
/// (`restart`). The server is a separate process, so the supervisor dying takes no disk down.
public enum Supervisor {
    /// A server that exits with a status (not a signal) this soon failed to start: starting it
    /// again would only fail again, so the status is final. Later, any exit but 0 is a crash.
    /// Long enough for a network image that cannot be reached to fail its open (NBD connect
    /// 10 s, RBD monitor 20 s): restarting those only kept `add` waiting.
    static let startupWindow: Double = 30
    /// More than this many unplanned restarts within `window` seconds: give up.
    static let burst = 5
    static let window: Double = 30

    /// Runs `argv` (argv[0] is the executable), giving every run `readyFD` as its fd 3: `add`
    /// reads the first ready line from it, so a server that dies before it is ready is simply
    /// started again and the caller still gets its disk. SIGTERM to the supervisor stops the
    /// server and ends supervision (`del`). Returns the exit status to exit with.
    public static func run(argv: [String], readyFD: Int32?) -> Int32 {
        let args = argv
        let fd3 = readyFD ?? -1
        var crashes: [Deadline] = []
        let terminated = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        terminated.pointee = 0
        defer { terminated.deallocate() }
        setenv(environmentKey, String(getpid()), 1)  // the server records who supervises it
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        while true {
            let started = Deadline.now
            let pid: pid_t
            do {
                pid = try Subprocess.spawn(args[0], argv: args, fd3: fd3)
            } catch {
                note("cannot start \(args[0]): \(error.reason)")
                return 1
            }
            let status = cvduse_wait_forwarding_sigterm(pid, terminated)
            if terminated.pointee != 0 {
                note("stopped: server \(pid) ended (\(describe(status)))")
                return status >= 0 && status < 256 ? status : 0
            }
            if status == ExportServer.handOverExitStatus {
                note("server \(pid) handed over; starting the new one")
                continue
            }
            if status == 0 || (status > 0 && status < 256 && Deadline.now.seconds(since: started) < startupWindow) {
                return status
            }
            let now = Deadline.now
            crashes = crashes.filter { now.seconds(since: $0) < window } + [now]
            guard crashes.count <= burst else {
                note("server \(pid) ended (\(describe(status))) \(crashes.count) times within \(Int(window)) s: giving up")
                return 1
            }
            note("server \(pid) ended (\(describe(status))): starting it again")
            usleep(100_000)
        }
    }

    /// Set for the server: the supervisor's pid.
    static let environmentKey = "VDUSE_EXPORT_SUPERVISOR"

    /// The supervisor of this process, if one of ours started it.
    static var ofThisProcess: Int32? {
        guard let value = getenv(environmentKey), let pid = Int32(String(cString: value)), pid == getppid() else { return nil }
        return pid
    }

    /// Whether `pid` is a running supervisor of ours.
    public static func isSupervisor(_ pid: Int32) -> Bool {
        guard pid > 1, let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
        let argv = cmdline.split(separator: "\0")
        return argv.count > 1 && argv[1] == "supervise"
    }

    /// The supervisor of server `pid`, if one of ours started it.
    public static func of(server pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let ppid = Int32(fields[1]), ppid > 1,
              let cmdline = try? String(contentsOfFile: "/proc/\(ppid)/cmdline", encoding: .utf8) else { return nil }
        let argv = cmdline.split(separator: "\0")
        return argv.count > 1 && argv[1] == "supervise" ? ppid : nil
    }

    static func describe(_ status: Int32) -> String {
        status >= 256 ? "signal \(status - 256)" : "exit status \(status)"
    }

    private static func note(_ message: String) {
        FileHandle.standardError.write(Data("vduse-export supervise: \(message)\n".utf8))
    }
}
