import Foundation
import Glibc

/// The supervisor process `add` starts (`vduse-export supervise … -- vduse-export serve …`) as
/// the others see it: the server learns its pid from the environment, `del` finds it from the
/// server's parent to stop it first. Its loop is in Server.
public enum Supervisor {
    /// Set for the server: the supervisor's pid.
    public static let environmentKey = "VDUSE_EXPORT_SUPERVISOR"

    /// The supervisor of this process, if one of ours started it.
    public static var ofThisProcess: Int32? {
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
}
