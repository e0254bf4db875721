import QMP
import QAPI
import Foundation
import Kernel
import Glibc

/// `resize NAME SIZE`: the size argument, the shrink guard and the QMP round trip.
public enum SizeArgument {
    /// Bytes: `10G`, `+1G` (grow by), `-512M` (shrink by) or a plain number; suffixes k, M, G, T,
    /// P are powers of 1024 as in QEMU. The result must be a positive multiple of 512.
    public static func parse(_ text: String, current: UInt64) throws(ProvisioningError) -> UInt64 {
        let invalid = ProvisioningError(.invalidOptions, "invalid size '\(text)': want BYTES, +BYTES or -BYTES with an optional k, M, G, T or P suffix")
        var s = Substring(text)
        let sign = s.first == "+" || s.first == "-" ? s.removeFirst() : nil
        var shift: UInt64 = 0
        if let last = s.last, let i = "kmgtp".firstIndex(of: Character(last.lowercased())) {
            shift = 10 * UInt64("kmgtp".distance(from: "kmgtp".startIndex, to: i) + 1)
            s.removeLast()
        }
        guard !s.isEmpty, s.allSatisfy(\.isASCII), let n = UInt64(s), n <= (UInt64.max >> shift) else { throw invalid }
        let amount = n << shift
        let bytes: UInt64
        switch sign {
        case "+"?:
            let (sum, overflow) = current.addingReportingOverflow(amount)
            guard !overflow else { throw invalid }
            bytes = sum
        case "-"?:
            guard amount < current else { throw ProvisioningError(.invalidOptions, "cannot shrink by \(text): the disk has \(current) bytes") }
            bytes = current - amount
        default: bytes = amount
        }
        guard bytes > 0, bytes % 512 == 0, bytes <= UInt64(Int64.max) else {
            throw ProvisioningError(.invalidOptions, "invalid size \(bytes): must be a positive multiple of 512 bytes")
        }
        return bytes
    }
}

/// What a shrink must not cut: a mounted (or held) partition ends where the partition ends; a
/// file system on the whole disk is taken to fill it, so any shrink is refused then.
public enum ShrinkGuard {
    /// The lowest size allowed and why, or nil when nothing on the disk is in use.
    /// `mounts` is /proc/self/mounts; `sysBlock` is /sys/block (a fake tree in tests).
    public static func protectedEnd(disk: String, size: UInt64, mounts: String, sysBlock: String = "/sys/block") -> (bytes: UInt64, reason: String)? {
        let fm = FileManager.default
        let sources = Set(mounts.split(separator: "\n").compactMap { line -> String? in
            guard let f = line.split(separator: " ").first, f.hasPrefix("/dev/") else { return nil }
            return URL(fileURLWithPath: String(f)).resolvingSymlinksInPath().path
        })
        func inUse(_ node: String, _ dir: String) -> String? {
            if sources.contains("/dev/\(node)") {
                let line = mounts.split(separator: "\n").first { URL(fileURLWithPath: String($0.split(separator: " ")[0])).resolvingSymlinksInPath().path == "/dev/\(node)" }
                return "/dev/\(node) is mounted on \(line.map { String($0.split(separator: " ")[1]) } ?? "?")"
            }
            if let h = (try? fm.contentsOfDirectory(atPath: "\(dir)/holders"))?.sorted().first { return "/dev/\(node) is held by \(h)" }
            return nil
        }
        if let reason = inUse(disk, "\(sysBlock)/\(disk)") { return (size, reason) }
        var best: (bytes: UInt64, reason: String)?
        for entry in ((try? fm.contentsOfDirectory(atPath: "\(sysBlock)/\(disk)")) ?? []).sorted() where entry.hasPrefix(disk) {
            let dir = "\(sysBlock)/\(disk)/\(entry)"
            guard let start = number("\(dir)/start"), let sectors = number("\(dir)/size"), let reason = inUse(entry, dir) else { continue }
            let end = (start + sectors) * 512
            if end > best?.bytes ?? 0 { best = (end, reason) }
        }
        return best
    }

    static func number(_ path: String) -> UInt64? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

extension Provisioner {
    /// A string member of a QMP reply object.
    static func member(_ value: OptionValue, _ key: String) -> String? {
        guard case let .object(members) = value, case let .string(s)? = members.first(where: { $0.key == key })?.value else { return nil }
        return s
    }

    /// Resizes the export `name` to `sizeText` through its server's QMP socket (block_resize) and
    /// returns once the kernel reports the new capacity.
    public func resize(name: String, to sizeText: String, force: Bool, timeout: TimeInterval = 30) throws(ProvisioningError) -> ExportRecord {
        guard let record = state.read(name) else { throw ProvisioningError(.notFound, "no export named '\(name)'") }
        guard record.state == .running, let socket = record.socket else {
            throw ProvisioningError(.conflict, "export '\(name)' has no running server: run 'vduse-export del \(name)' first")
        }
        let disk = (record.device as NSString).lastPathComponent
        let current = ShrinkGuard.number("/sys/block/\(disk)/size").map { $0 * 512 } ?? record.size
        let bytes = try SizeArgument.parse(sizeText, current: current)
        if bytes < current, !force {
            let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
            if let end = ShrinkGuard.protectedEnd(disk: disk, size: current, mounts: mounts), bytes < end.bytes {
                throw ProvisioningError(.inUse, "cannot shrink '\(name)' to \(bytes) bytes: \(end.reason), which ends at \(end.bytes) (use --force to shrink anyway)")
            }
        }
        func qmp(_ command: String, _ arguments: OptionValue = .object([])) throws(ExportError) -> OptionValue {
            do {
                return try QMPClient.execute(socket: socket, command: command, arguments: arguments)
            } catch {
                throw ExportError(.kernel, "cannot resize '\(name)': \(error)", cause: error)
            }
        }
        // add names its node disk0, but a `serve --record` export may use any node: ask.
        guard case let .list(exports) = try qmp("query-block-exports"),
              let node = exports.lazy.compactMap({ Self.member($0, "id") == record.id ? Self.member($0, "node-name") : nil }).first else {
            throw ExportError(.kernel, "the server of '\(name)' does not list export '\(record.id)'")
        }
        _ = try qmp("block_resize", .object([("node-name", .string(node)), ("size", .number(String(bytes)))]))
        // virtio_blk reads the new capacity in a work item after the config interrupt.
        let deadline = Deadline.after(seconds: timeout)
        while ShrinkGuard.number("/sys/block/\(disk)/size") != bytes / 512 {
            guard !deadline.hasPassed else {
                throw ProvisioningError(.kernel, "resized '\(name)' to \(bytes) bytes, but the kernel still reports \((ShrinkGuard.number("/sys/block/\(disk)/size") ?? 0) * 512)")
            }
            usleep(10_000)
        }
        logger.info("export \(name) resized from \(current) to \(bytes) bytes")
        var updated = state.read(name) ?? record
        updated.size = bytes
        return updated
    }
}
