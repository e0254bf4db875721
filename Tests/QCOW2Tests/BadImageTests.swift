import Foundation
import QCOW2
import Testing
import TestSupport

/// Images we must refuse: each with its own message, the file left exactly as it was.
@Suite struct Qcow2BadImageTests {
    /// Opens writable (unless told otherwise) and returns the error, checking nothing changed.
    func refusal(_ path: String, readOnly: Bool = false) throws -> Qcow2Error? {
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        defer { #expect((try? Data(contentsOf: URL(fileURLWithPath: path))) == before, "\(path) was modified") }
        do {
            let image = try Qcow2Image(path: path, readOnly: readOnly)
            try image.close()
            return nil
        } catch let e as Qcow2Error {
            return e
        }
    }

    func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seek(toOffset: offset)
        h.write(Data(bytes))
        try h.close()
    }

    func be(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64(n - 1 - $0))) } }

    func fresh(_ dir: TempDir, _ options: [String] = []) throws -> String {
        let p = dir.file("bad.qcow2")
        try Qemu.run("qemu-img", ["create", "-q", "-f", "qcow2"] + options + [p, "1M"])
        return p
    }

    @Test func truncatedHeader() throws {
        let dir = try TempDir()
        let p = dir.file("t.qcow2")
        try Data([0x51, 0x46, 0x49, 0xfb] + [UInt8](repeating: 0, count: 40)).write(to: URL(fileURLWithPath: p))
        let e = try refusal(p)
        #expect(e == .truncated(path: p))
        #expect(e?.description == "\(p): truncated qcow2 header")
    }

    @Test func badMagic() throws {
        let dir = try TempDir()
        let p = dir.file("raw.img")
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: p))
        let e = try refusal(p)
        #expect(e?.description == "\(p): not a qcow2 image (bad magic)")
    }

    /// The header field alone decides (qemu-img's LUKS creation benchmarks PBKDF for seconds of
    /// CPU and fails under load, so the field is set by hand).
    @Test(arguments: [1, 2]) func encrypted(_ method: Int) throws {
        let dir = try TempDir()
        let p = try fresh(dir)
        try patch(p, at: 32, be(UInt64(method), 4))
        #expect(try refusal(p)?.description == "\(p): unsupported qcow2 feature: encryption (crypt_method \(method))")
    }

    @Test func externalDataFile() throws {
        let dir = try TempDir()
        let p = try fresh(dir, ["-o", "data_file=\(dir.file("data.raw"))"])
        #expect(try refusal(p)?.description == "\(p): unsupported qcow2 feature: external data file")
    }

    @Test func extendedL2() throws {
        let dir = try TempDir()
        let p = try fresh(dir, ["-o", "extended_l2=on"])
        #expect(try refusal(p)?.description == "\(p): unsupported qcow2 feature: extended L2 entries (subclusters)")
    }

    @Test func unknownIncompatibleBit() throws {
        let dir = try TempDir()
        let p = try fresh(dir)
        try patch(p, at: 72, be(1 << 9, 8))
        #expect(try refusal(p)?.description == "\(p): unsupported qcow2 feature: incompatible feature bit 9")
    }

    @Test func l1PastEndOfFile() throws {
        let dir = try TempDir()
        let p = try fresh(dir)
        try patch(p, at: 40, be(1 << 30, 8))
        #expect(try refusal(p)?.description == "\(p): corrupt qcow2 image: L1 table extends past the end of the file")
    }

    @Test func unalignedTables() throws {
        let dir = try TempDir()
        let p = try fresh(dir)
        try patch(p, at: 40, be(0x30200, 8))
        #expect(try refusal(p)?.description == "\(p): corrupt qcow2 image: L1 table offset 197120 is not cluster aligned")
        try patch(p, at: 40, be(0x30000, 8))
        try patch(p, at: 48, be(0x10008, 8))
        #expect(try refusal(p)?.description == "\(p): corrupt qcow2 image: refcount table offset 65544 is not cluster aligned")
    }

    @Test func badSizes() throws {
        let dir = try TempDir()
        let p = try fresh(dir)
        try patch(p, at: 20, be(22, 4))
        #expect(try refusal(p)?.description == "\(p): corrupt qcow2 image: cluster_bits 22 is outside 9...21 (512 B to 2 MiB clusters)")
        try patch(p, at: 20, be(16, 4))
        try patch(p, at: 4, be(4, 4))
        #expect(try refusal(p)?.description == "\(p): unsupported qcow2 feature: version 4 (only 2 and 3 exist)")
        try patch(p, at: 4, be(3, 4))
        try patch(p, at: 24, be(1 << 40, 8))  // virtual size beyond what the L1 table maps
        #expect(try refusal(p)?.description == "\(p): corrupt qcow2 image: L1 table of 1 entries is too small for 1099511627776 bytes")
    }

    @Test func backingLoop() throws {
        let dir = try TempDir()
        let a = dir.file("a.qcow2"), b = dir.file("b.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", b, "1M")
        try Qemu.img("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
        try Qemu.img("rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", b)
        #expect(try refusal(a)?.description == "backing chain loop: \(a) -> \(dir.path)/b.qcow2 -> \(dir.path)/a.qcow2")
        #expect(try refusal(a, readOnly: true) != nil)
    }

    @Test func missingBacking() throws {
        let dir = try TempDir()
        let p = dir.file("o.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", p, "1M")
        #expect(try refusal(p)?.description == "\(p): backing file '\(dir.path)/gone.raw' not found")
    }

    @Test func snapshotsOnlyReadOnly() throws {
        let dir = try TempDir()
        let p = try fresh(dir)
        try Qemu.io(p, "write -P 0x42 0 64k")
        try Qemu.img("snapshot", "-c", "s1", p)
        #expect(try refusal(p)?.description == "\(p): unsupported qcow2 feature: writing to an image with internal snapshots (1); open it read-only")
        #expect(try refusal(p, readOnly: true) == nil)
    }

    @Test func dirtyWithBitmapsOnlyReadOnly() throws {
        let dir = try TempDir()
        let p = try fresh(dir, ["-o", "lazy_refcounts=on"])
        try Qemu.img("bitmap", "--add", p, "b0")
        try patch(p, at: 72, be(1, 8))
        #expect(try refusal(p)?.description.contains("repairing the refcounts of a dirty image with bitmaps") == true)
        #expect(try refusal(p, readOnly: true) == nil)
    }
}
