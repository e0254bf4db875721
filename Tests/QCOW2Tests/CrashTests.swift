import Foundation
@testable import QCOW2
import Synchronization
import Testing
import TestSupport

/// Crash simulation: every write and sync the engine issues is recorded; at sampled crash points
/// the image is rebuilt from what was surely durable (everything before the last sync) plus a
/// random subset of the writes after it, as a disk cache may persist them in any order. Each
/// such image must pass `qemu-img check` with at worst leaked clusters (exit 0 or 3).
@Suite struct Qcow2CrashTests {
    final class Recorder: Sendable {
        let events = Mutex<[FileEvent]>([])
    }

    /// Runs `ops` random operations on `path`, recording; returns the file before and the events.
    func record(_ path: String, seed: UInt64, ops: Int, maxLength: Int) throws -> (Data, [FileEvent]) {
        let initial = try Data(contentsOf: URL(fileURLWithPath: path))
        let recorder = Recorder()
        var rng = SplitMix64(seed: seed)
        do {
            let image = try Qcow2Image(path: path)
            image.observeFile { event in recorder.events.withLock { $0.append(event) } }
            for op in 0..<ops {
                let size = Int(image.virtualSize)
                let offset = Int.random(in: 0..<size, using: &rng)
                let length = min(size - offset, Int.random(in: 1...maxLength, using: &rng))
                switch Int.random(in: 0..<9, using: &rng) {
                case 8:
                    try image.flush()  // as a guest does now and then: L2 write-back
                case 0..<5:
                    try rng.bytes(length).withUnsafeBytes { try image.write(at: UInt64(offset), from: $0) }
                case 5:
                    try image.discard(at: UInt64(offset), length: length)
                case 6:
                    try image.writeZeroes(at: UInt64(offset), length: length, unmap: Bool.random(using: &rng))
                default:
                    if op == ops / 2 { try image.resize(to: UInt64(size + (1 << 20))) }
                }
            }
            // No close: the process dies here.
        }
        return (initial, recorder.events.withLock { $0 })
    }

    /// The file as a crash after event `point` could leave it.
    func crashImage(_ initial: Data, _ events: [FileEvent], point: Int, rng: inout SplitMix64) -> Data {
        var out = initial
        let lastSync = events[0..<point].lastIndex { if case .sync = $0 { true } else { false } } ?? -1
        for (i, e) in events[0..<point].enumerated() {
            guard case let .write(offset, bytes) = e else { continue }
            if i > lastSync, Bool.random(using: &rng) { continue }
            let end = Int(offset) + bytes.count
            if out.count < end { out.append(Data(count: end - out.count)) }
            out.replaceSubrange(Int(offset)..<end, with: bytes)
        }
        return out
    }

    func checkCrashPoints(_ dir: TempDir, _ initial: Data, _ events: [FileEvent], seed: UInt64, points: Int,
                          lazy: Bool = false) throws {
        #expect(events.count > 50, "the workload wrote too little to test anything")
        var rng = SplitMix64(seed: seed)
        let crash = dir.file("crash.qcow2")
        // A crash just before every sync (the widest windows of writes in flight), then at random.
        let syncs = events.indices.filter { if case .sync = events[$0] { $0 > 0 } else { false } }
        let randomPoints = (0..<points).map { _ in Int.random(in: 1...events.count, using: &rng) }
        for point in syncs + randomPoints {
            try crashImage(initial, events, point: point, rng: &rng).write(to: URL(fileURLWithPath: crash))
            if lazy {
                // Dirty after a crash: our writable open repairs the refcounts.
                try Qcow2Image(path: crash).close()
            }
            let (status, out) = try Qemu.run("qemu-img", ["check", crash], allowFailure: true)
            #expect(status == 0 || status == 3, "crash after event \(point) of \(events.count): qemu-img check exit \(status)\n\(out)")
            if lazy { #expect(status == 0, "after repair: \(out)") }
        }
    }

    @Test func overBackingWith4kClusters() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("base.raw"), size: 8 << 20, seed: 21)
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "-o", "cluster_size=4k", dir.file("w.qcow2"))
        let (initial, events) = try record(dir.file("w.qcow2"), seed: 22, ops: 40, maxLength: 20000)
        try checkCrashPoints(dir, initial, events, seed: 23, points: 30)
    }

    /// 512-byte clusters, 64-bit refcounts: new refcount blocks and table moves at crash points.
    @Test func refcountGrowth() throws {
        let dir = try TempDir()
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", dir.file("w.qcow2"), "8M")
        let (initial, events) = try record(dir.file("w.qcow2"), seed: 24, ops: 30, maxLength: 300_000)
        try checkCrashPoints(dir, initial, events, seed: 25, points: 30)
    }

    @Test func lazyRefcounts() throws {
        let dir = try TempDir()
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,cluster_size=4k", dir.file("w.qcow2"), "8M")
        let (initial, events) = try record(dir.file("w.qcow2"), seed: 26, ops: 40, maxLength: 20000)
        try checkCrashPoints(dir, initial, events, seed: 27, points: 30, lazy: true)
    }
}
