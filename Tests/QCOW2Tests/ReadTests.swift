import Foundation
import QCOW2
import Testing
import TestSupport

/// Reads the whole guest view through the engine, in odd-sized requests split over two buffers.
func engineBytes(_ image: Qcow2Image, seed: UInt64 = 1) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: Int(image.virtualSize))
    var rng = SplitMix64(seed: seed)
    var pos = 0
    try out.withUnsafeMutableBytes { all in
        while pos < all.count {
            let n = Swift.min(all.count - pos, Int.random(in: 1...300_000, using: &rng))
            let cut = Int.random(in: 0...n, using: &rng)
            let a = UnsafeMutableRawBufferPointer(rebasing: all[pos..<(pos + cut)])
            let b = UnsafeMutableRawBufferPointer(rebasing: all[(pos + cut)..<(pos + n)])
            try image.read(at: UInt64(pos), into: [a, b])
            pos += n
        }
    }
    return out
}

/// Opens `image` read-only and checks every byte against `qemu-img convert -O raw`.
func expectSameAsQemu(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let expected = try Qemu.rawBytes(path)
    let image = try Qcow2Image(path: path, readOnly: true)
    defer { try? image.close() }
    let got = try engineBytes(image)
    #expect(got.count == expected.count, "size", sourceLocation: sourceLocation)
    if let d = got.firstDifference(expected) {
        Issue.record("\(path): first difference at byte \(d)", sourceLocation: sourceLocation)
    }
}

@Suite struct Qcow2ReadTests {
    static let size = 12 << 20

    @Test(arguments: ["512", "4k", "64k", "2M"])
    func clusterSizes(_ clusterSize: String) throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("src.raw"), size: Self.size, seed: 7)
        try Qemu.img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=\(clusterSize)", dir.file("src.raw"), dir.file("a.qcow2"))
        try expectSameAsQemu(dir.file("a.qcow2"))
    }

    @Test func version2() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("src.raw"), size: Self.size, seed: 8)
        try Qemu.img("convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10", dir.file("src.raw"), dir.file("a.qcow2"))
        try expectSameAsQemu(dir.file("a.qcow2"))
    }

    @Test(arguments: [("zlib", "4k"), ("zlib", "64k"), ("zstd", "64k"), ("zstd", "2M")])
    func compressed(_ type: String, _ clusterSize: String) throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("src.raw"), size: Self.size, seed: 9)
        // Compressible content too, so some clusters end up sharing host clusters.
        try Qemu.io(dir.file("src.raw"), format: "raw", "write -P 0x5a 4M 1M")
        try Qemu.img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=\(type),cluster_size=\(clusterSize)",
                     dir.file("src.raw"), dir.file("c.qcow2"))
        let info = try Qemu.run("qemu-img", ["info", dir.file("c.qcow2")]).output
        #expect(info.contains("compression type: \(type)"), "\(info)")
        try expectSameAsQemu(dir.file("c.qcow2"))
    }

    @Test func preallocatedMetadata() throws {
        let dir = try TempDir()
        let img = dir.file("p.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", img, "\(Self.size)")
        try Qemu.io(img, "write -P 0x11 1000 70k", "write -P 0x22 3M 64k", "write -z 8M 128k")
        try expectSameAsQemu(img)
    }

    @Test(arguments: ["lazy_refcounts=on", "refcount_bits=1", "refcount_bits=64"])
    func headerOptions(_ option: String) throws {
        let dir = try TempDir()
        let img = dir.file("o.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", option, img, "\(Self.size)")
        try Qemu.io(img, "write -P 0x33 0 200k", "write -P 0x44 5M 3", "write -z 192k 8k")
        try expectSameAsQemu(img)
    }

    /// raw base <- qcow2 (absolute backing path) <- qcow2 (relative path), with zero clusters and
    /// discards in the top layer over data in the lower ones.
    @Test func backingChainOfThree() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("base.raw"), size: Self.size, seed: 10)
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", dir.file("base.raw"), "-F", "raw", "-o", "cluster_size=4k", dir.file("mid.qcow2"))
        try Qemu.io(dir.file("mid.qcow2"), "write -P 0x66 50000 20000", "write -z 0 4096", "write -P 0x67 11M 1M")
        try FileManager.default.createDirectory(atPath: dir.file("top"), withIntermediateDirectories: true)
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", "../mid.qcow2", "-F", "qcow2", dir.file("top/top.qcow2"), "\(Self.size + (1 << 20))")
        try Qemu.io(dir.file("top/top.qcow2"), "write -P 0x77 60000 70000", "write -z 6M 64k", "discard 11M 64k", "write -P 0x78 \(Self.size) 4k")
        try expectSameAsQemu(dir.file("top/top.qcow2"))
        let image = try Qcow2Image(path: dir.file("top/top.qcow2"), readOnly: true)
        #expect(image.backingPath == dir.file("top/../mid.qcow2"))
        try image.close()
    }

    @Test func backingOverride() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("base.raw"), size: 1 << 20, seed: 11)
        try Qemu.img("create", "-q", "-f", "qcow2", dir.file("o.qcow2"), "1M")
        try Qemu.io(dir.file("o.qcow2"), "write -P 0x12 4096 4096")
        var expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir.file("base.raw"))))
        // The write allocated the whole first 64 KiB cluster of the overlay (zeros around it).
        for i in 0..<65536 { expected[i] = (4096..<8192).contains(i) ? 0x12 : 0 }
        let image = try Qcow2Image(path: dir.file("o.qcow2"), readOnly: true, backing: .file(path: dir.file("base.raw"), format: .raw))
        let got = try engineBytes(image)
        #expect(got.firstDifference(expected) == nil)
        try image.close()
        let none = try Qcow2Image(path: dir.file("o.qcow2"), readOnly: true, backing: .none)
        let bytes = try engineBytes(none)
        #expect(bytes[0] == 0 && bytes[4096] == 0x12)
        try none.close()
    }

    @Test func probe() throws {
        let dir = try TempDir()
        try Qemu.img("create", "-q", "-f", "qcow2", dir.file("a.qcow2"), "1M")
        try Qemu.img("create", "-q", "-f", "raw", dir.file("a.raw"), "1M")
        #expect(try ImageFormat.probe(path: dir.file("a.qcow2")) == .qcow2)
        #expect(try ImageFormat.probe(path: dir.file("a.raw")) == .raw)
    }
}
