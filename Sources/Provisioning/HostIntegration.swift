import Kernel
import QAPI
import QMP
import Core
import CVDUSE
import Foundation
import Glibc

/// The server's own mount namespace: mounts and unmounts made on the host afterwards do not
/// propagate into it, so unmounting (even lazily) a file system the server uses cannot pin or
/// deadlock it, and the server's view stays stable for its lifetime.
public enum MountNamespace {
    public static func enterPrivate() throws {
        let r = cvduse_private_mount_namespace()
        guard r == 0 else {
            throw ExportError("cannot enter a private mount namespace: \(String(cString: strerror(-r)))")
        }
    }
}

/// Who uses a disk: mounts (of it or its partitions), holders (device-mapper, md) and processes
/// that have it open. `del` refuses while any of these exist, unless forced.
public enum DeviceUsage {
    /// Human-readable reasons the device is in use; empty when it is free.
    public static func users(of device: String, ignoringPID: Int32? = nil) -> [String] {
        let disk = (device as NSString).lastPathComponent
        var reasons: [String] = []
        var nodes = Set([device])
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: "/sys/block/\(disk)")) ?? [] where entry.hasPrefix(disk) {
            nodes.insert("/dev/\(entry)")
        }
        if let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) {
            for line in mounts.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count > 1, nodes.contains(String(f[0])) { reasons.append("\(f[0]) is mounted on \(f[1])") }
            }
        }
        for node in nodes {
            let holders = (try? fm.contentsOfDirectory(atPath: "/sys/class/block/\((node as NSString).lastPathComponent)/holders")) ?? []
            for h in holders { reasons.append("\(node) is held by \(h)") }
        }
        for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let n = Int32(pid), n != getpid(), n != ignoringPID else { continue }
            for fd in (try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [] {
                if let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"), nodes.contains(target) {
                    let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
                        .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                    reasons.append("\(target) is open in process \(pid) (\(comm))")
                    break
                }
            }
        }
        return reasons
    }
}
