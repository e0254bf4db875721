import Foundation
import QCOW2
import Testing
import TestSupport

/// Random writes, discards, write-zeroes and one resize, applied to the engine and to an
/// in-memory raw reference; then qemu-img must find the image clean and equal to the reference.
struct Workload {
    let image: String
    let clusterSize: Int
    let version: Int
    /// What unallocated clusters show: the backing chain's guest view (nil: zeros).
    var backingView: [UInt8]?
    var checkBetweenOps = true

    func run(seed: UInt64, ops: Int = 60) throws {
        var rng = SplitMix64(seed: seed)
        var reference = try Qemu.rawBytes(image)
        let img = try Qcow2Image(path: image)
        for op in 0..<ops {
            let size = reference.count
            let offset = Int.random(in: 0..<size, using: &rng)
            let length = Swift.min(size - offset, Int.random(in: 1...(3 * clusterSize + 5000), using: &rng))
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:
                let data = rng.bytes(length)
                try data.withUnsafeBytes { try img.write(at: UInt64(offset), from: $0) }
                reference.replaceSubrange(offset..<(offset + length), with: data)
            case 6, 7:
                try img.discard(at: UInt64(offset), length: length)
                for c in wholeClusters(offset, length, size) {
                    for i in c {
                        reference[i] = version >= 3 ? 0 : (backingView.map { i < $0.count ? $0[i] : 0 } ?? 0)
                    }
                }
            case 8:
                try img.writeZeroes(at: UInt64(offset), length: length, unmap: Bool.random(using: &rng))
                for i in offset..<(offset + length) { reference[i] = 0 }
            default:
                if op > ops / 2, reference.count == size {
                    let grow = Int.random(in: 1...(3 << 20), using: &rng) / 512 * 512 + 512
                    try img.resize(to: UInt64(size + grow))
                    reference += [UInt8](repeating: 0, count: grow)
                }
            }
            // What a crash right now would leave: consistent, leaks allowed.
            if checkBetweenOps, op % 15 == 14 { try Qemu.check(image, allowLeaks: true) }
        }
        let got = try engineBytes(img)
        #expect(got.firstDifference(reference) == nil, "engine read-back differs from the reference")
        try img.close()
        try Qemu.check(image)
        let refPath = image + ".reference.raw"
        try Data(reference).write(to: URL(fileURLWithPath: refPath))
        let (status, out) = try Qemu.run("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", image, refPath], allowFailure: true)
        #expect(status == 0, "qemu-img compare: \(out)")
    }

    /// Byte ranges of the whole clusters a discard covers (the image's last cluster counts as
    /// whole when the range reaches the end).
    private func wholeClusters(_ offset: Int, _ length: Int, _ size: Int) -> [Range<Int>] {
        let start = (offset + clusterSize - 1) / clusterSize * clusterSize
        let stop = offset + length
        let end = stop == size ? size : stop / clusterSize * clusterSize
        return start < end ? [start..<end] : []
    }
}

@Suite struct Qcow2WriteTests {
    static let size = 8 << 20

    @Test(arguments: ["4k", "64k", "2M"])
    func noBacking(_ clusterSize: String) throws {
        let dir = try TempDir()
        let img = dir.file("w.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=\(clusterSize)", img, "\(Self.size)")
        try Workload(image: img, clusterSize: bytes(clusterSize), version: 3).run(seed: 1)
    }

    @Test(arguments: [("4k", "1.1"), ("64k", "0.10"), ("2M", "1.1")])
    func overRawBacking(_ clusterSize: String, _ compat: String) throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("base.raw"), size: Self.size, seed: 2)
        let img = dir.file("w.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                     "-o", "cluster_size=\(clusterSize),compat=\(compat)", img)
        let base = try Qemu.rawBytes(dir.file("base.raw"), format: "raw")
        try Workload(image: img, clusterSize: bytes(clusterSize), version: compat == "0.10" ? 2 : 3, backingView: base).run(seed: 3)
    }

    /// raw <- qcow2 <- qcow2 (written), the middle one with its own data; the backing is
    /// longer than the overlay so the resize must hide the backing's tail.
    @Test func overQcow2Chain() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("base.raw"), size: Self.size + (4 << 20), seed: 4)
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", dir.file("mid.qcow2"))
        try Qemu.io(dir.file("mid.qcow2"), "write -P 0x3c 1M 300k", "write -z 2M 64k")
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.file("w.qcow2"), "\(Self.size)")
        let mid = try Qemu.rawBytes(dir.file("mid.qcow2"))
        try Workload(image: dir.file("w.qcow2"), clusterSize: 65536, version: 3, backingView: mid).run(seed: 5)
        #expect(try Qemu.rawBytes(dir.file("mid.qcow2")) == mid, "the backing image changed")
    }

    @Test(arguments: ["refcount_bits=1", "refcount_bits=64,cluster_size=512", "preallocation=metadata"])
    func headerOptions(_ options: String) throws {
        let dir = try TempDir()
        let img = dir.file("w.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", options, img, "\(Self.size)")
        let cs = options.contains("cluster_size=512") ? 512 : 65536
        try Workload(image: img, clusterSize: cs, version: 3).run(seed: 6)
    }

    /// Lazy refcounts: dirty while open (no check in between), clean after close.
    @Test func lazyRefcounts() throws {
        let dir = try TempDir()
        let img = dir.file("w.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", img, "\(Self.size)")
        var w = Workload(image: img, clusterSize: 65536, version: 3)
        w.checkBetweenOps = false
        try w.run(seed: 7)
        let reopened = try Qcow2Image(path: img)  // refused if the dirty bit were still set
        try reopened.close()
    }

    /// Overwriting compressed clusters: copy out, write elsewhere, release the shared sectors.
    @Test func overCompressed() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("src.raw"), size: Self.size, seed: 8)
        try Qemu.io(dir.file("src.raw"), format: "raw", "write -P 0x5a 3M 1M")
        try Qemu.img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4k", dir.file("src.raw"), dir.file("w.qcow2"))
        try Workload(image: dir.file("w.qcow2"), clusterSize: 4096, version: 3).run(seed: 9)
    }

    /// 512-byte clusters with 64-bit refcounts: the refcount table covers 2 MiB, so filling
    /// 16 MiB moves it several times.
    @Test func refcountTableGrows() throws {
        let dir = try TempDir()
        let img = dir.file("g.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", img, "16M")
        let before = try Data(contentsOf: URL(fileURLWithPath: img))[48..<56]
        var rng = SplitMix64(seed: 12)
        let data = rng.bytes(16 << 20)
        let image = try Qcow2Image(path: img)
        for chunk in stride(from: 0, to: data.count, by: 1 << 20) {
            try data[chunk..<(chunk + (1 << 20))].withUnsafeBytes { try image.write(at: UInt64(chunk), from: $0) }
        }
        try image.close()
        let after = try Data(contentsOf: URL(fileURLWithPath: img))[48..<56]
        #expect(before != after, "the refcount table did not move")
        try Qemu.check(img)
        #expect(try Qemu.rawBytes(img) == data)
    }

    @Test func flushAndReopen() throws {
        let dir = try TempDir()
        let img = dir.file("f.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", img, "1M")
        let image = try Qcow2Image(path: img)
        let data = [UInt8](repeating: 0xa5, count: 1000)
        try data.withUnsafeBytes { try image.write(at: 70000, from: $0) }
        try image.flush()
        try Qemu.check(img)
        try image.close()
        #expect(try Qemu.rawBytes(img)[70000..<71000].allSatisfy { $0 == 0xa5 })
    }

    @Test func readOnlyRefusesWrites() throws {
        let dir = try TempDir()
        let img = dir.file("r.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", img, "1M")
        let image = try Qcow2Image(path: img, readOnly: true)
        #expect(throws: Qcow2Error.readOnly(path: img)) {
            try [UInt8](repeating: 1, count: 512).withUnsafeBytes { try image.write(at: 0, from: $0) }
        }
        #expect(throws: Qcow2Error.outOfRange(offset: 1 << 20, length: 1, size: 1 << 20)) {
            var b: UInt8 = 0
            try withUnsafeMutableBytes(of: &b) { try image.read(at: 1 << 20, into: $0) }
        }
        try image.close()
    }
}

func bytes(_ size: String) -> Int {
    let n = Int(size.dropLast())!
    switch size.last! {
    case "k": return n << 10
    case "M": return n << 20
    default: return Int(size)!
    }
}
