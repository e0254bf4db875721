import Foundation
import Glibc

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
        for (table, owner) in mountTables() {
            guard let mounts = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in mounts.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard f.count > 1, nodes.contains(String(f[0])) else { continue }
                reasons.append("\(f[0]) is mounted on \(f[1])" + (owner.map { " in the mount namespace of process \($0)" } ?? ""))
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

    /// Our mount table, then one per other mount namespace (containers, services with private
    /// mounts), with a process that lives in it: a disk mounted there is in use too.
    private static func mountTables() -> [(path: String, owner: Int32?)] {
        let fm = FileManager.default
        let own = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")
        var seen = Set([own ?? ""])
        var tables: [(String, Int32?)] = [("/proc/self/mounts", nil)]
        for entry in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let ns = try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt"),
                  seen.insert(ns).inserted else { continue }
            tables.append(("/proc/\(pid)/mounts", pid))
        }
        return tables
    }
}
