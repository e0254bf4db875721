import Foundation
import Glibc
import Kernel
import Provisioning

/// SIGINT and SIGTERM while a job runs: noted here, and the job is cancelled (the verb then
/// exits 130). A plain flag: the handler may only store it.
nonisolated(unsafe) private var interruptSignal: sig_atomic_t = 0

enum JobInterrupt {
    static func install() {
        signal(SIGINT) { _ in interruptSignal = 1 }
        signal(SIGTERM) { _ in interruptSignal = 1 }
    }

    static var requested: Bool { interruptSignal != 0 }
}

/// A job's progress: a bar on a terminal (stderr: bytes, rate, ETA), one JSON object per step
/// with --json (stdout), nothing otherwise.
final class JobProgressView {
    private let json: Bool
    private let bar: Bool
    private let label: String
    private let started = Deadline.now
    private var lastDraw: Deadline?

    init(label: String, json: Bool) {
        self.label = label
        self.json = json
        bar = !json && isatty(2) != 0
    }

    func show(_ p: JobProgress) {
        if json {
            Console.out(Console.jsonLine(p))
            return
        }
        let now = Deadline.now
        guard bar, lastDraw.map({ now.seconds(since: $0) >= 0.1 }) ?? true || p.status != "running" else { return }
        lastDraw = now
        let fraction = p.length == 0 ? 1 : min(1, Double(p.offset) / Double(p.length))
        let width = 30
        let filled = Int(fraction * Double(width))
        let elapsed = max(now.seconds(since: started), 0.001)
        let rate = Double(p.offset) / elapsed
        let eta = rate > 0 && p.length > p.offset ? String(format: " ETA %.0fs", Double(p.length - p.offset) / rate) : ""
        let line = String(format: "\r%@ [%@%@] %3.0f%% %@/%@ %@/s%@ %@\u{1b}[K", label,
                          String(repeating: "#", count: filled), String(repeating: ".", count: width - filled),
                          fraction * 100, Self.bytes(p.offset), Self.bytes(p.length), Self.bytes(UInt64(rate)), eta, p.status)
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Ends the bar's line.
    func finish() {
        if bar { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}
