import Foundation
import QCOW2
import Testing
import TestSupport

/// Crafted tables that point guest I/O at the image's own metadata or past its end: the request
/// fails, no byte of metadata changes, the file does not grow, and the image is marked corrupt
/// (qemu-img sees the bit; our next writable open refuses it).
@Suite struct Qcow2MetadataProtectionTests {
    static let copied: UInt64 = 1 << 63

    /// A 1 MiB image with 64 KiB clusters whose first guest cluster is allocated, and where its
    /// tables are: (L1 offset, refcount table offset, L2 offset).
    struct Layout {
        let path: String
        let l1: UInt64, refcountTable: UInt64, refcountBlock: UInt64, l2: UInt64

        init(_ dir: TempDir, size: String = "1M") throws {
            path = dir.file("c.qcow2")
            try Qemu.img("create", "-q", "-f", "qcow2", path, size)
            try Qemu.io(path, "write -P 0x5a 0 64k")
            let d = try Data(contentsOf: URL(fileURLWithPath: path))
            l1 = Self.be64(d, 40)
            refcountTable = Self.be64(d, 48)
            refcountBlock = Self.be64(d, Int(refcountTable))
            l2 = Self.be64(d, Int(l1)) & 0x00ff_ffff_ffff_fe00
        }

        static func be64(_ d: Data, _ at: Int) -> UInt64 { d[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }

        func patch(_ at: UInt64, _ value: UInt64, bytes: Int = 8) throws {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try h.seek(toOffset: at)
            h.write(Data((0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(bytes - 1 - $0))) }))
            try h.close()
        }

        func bytes() throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

        func corruptBit() throws -> Bool { try Self.be64(bytes(), 72) & 2 != 0 }
    }

    func write(_ image: Qcow2Image, at offset: UInt64, count: Int = 4096) throws {
        try [UInt8](repeating: 0xee, count: count).withUnsafeBytes { try image.write(at: offset, from: $0) }
    }

    func read(_ image: Qcow2Image, at offset: UInt64, count: Int = 4096) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        try buf.withUnsafeMutableBytes { try image.read(at: offset, into: $0) }
        return buf
    }

    /// Everything but the header's incompatible-features field, which marking may change.
    func withoutFeatures(_ d: Data) -> Data { d[0..<72] + d[80...] }

    func expectCorrupt(_ what: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected a corrupt-image error mentioning '\(what)'")
        } catch let e as Qcow2Error {
            if case .corrupt = e {
                #expect(e.description.contains(what), "\(e)")
            } else {
                Issue.record("expected corrupt, got \(e)")
            }
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// Guest data aimed at each table through a crafted L2 entry: refused, table intact.
    @Test(arguments: ["active L1 table", "refcount table", "refcount block"])
    func l2EntryIntoMetadata(_ target: String) throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        let host = target == "active L1 table" ? img.l1 : target == "refcount table" ? img.refcountTable : img.refcountBlock
        try img.patch(img.l2, host | Self.copied)
        let before = try img.bytes()

        let image = try Qcow2Image(path: img.path)
        expectCorrupt("L2 entry points into the \(target) at \(host)") { try write(image, at: 0) }
        #expect(image.markedCorrupt)
        // Later writes anywhere are refused; reads elsewhere still work.
        expectCorrupt("marked corrupt") { try write(image, at: 512 << 10) }
        #expect(try read(image, at: 512 << 10) == [UInt8](repeating: 0, count: 4096))
        expectCorrupt("points into the \(target)") { _ = try read(image, at: 0) }
        try image.close()

        let after = try img.bytes()
        #expect(after.count == before.count)
        #expect(withoutFeatures(after) == withoutFeatures(before), "metadata changed")
        #expect(try img.corruptBit())
        let info = try Qemu.run("qemu-img", ["info", "--output=json", img.path]).output
        #expect(info.contains("\"corrupt\": true"), "\(info)")
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: "the corrupt bit is set; open it read-only or repair it with qemu-img check -r all")) {
            try Qcow2Image(path: img.path)
        }
    }

    /// A discard must not free (and punch) the L1 table a crafted entry names.
    @Test func discardOfEntryIntoL1() throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        try img.patch(img.l2, img.l1)  // not "copied": a shared cluster, as if after a snapshot
        let before = try img.bytes()
        let image = try Qcow2Image(path: img.path)
        expectCorrupt("points into the active L1 table") { try image.discard(at: 0, length: 64 << 10) }
        expectCorrupt("marked corrupt") { try write(image, at: 100) }
        try image.close()
        #expect(withoutFeatures(try img.bytes()) == withoutFeatures(before))
        #expect(try img.corruptBit())
    }

    /// Entries far past the end once made writes grow the file to a terabyte (sparse).
    @Test(arguments: [true, false]) func l2EntryPastEnd(_ copied: Bool) throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        try img.patch(img.l2 + 8, (1 << 40) | (copied ? Self.copied : 0))  // guest cluster 1
        let size = try img.bytes().count
        let image = try Qcow2Image(path: img.path)
        expectCorrupt("L2 entry points past the end of the file (data cluster at 1099511627776") {
            try write(image, at: 64 << 10)
        }
        try image.close()
        #expect(try img.bytes().count == size)
        #expect(try img.corruptBit())
    }

    @Test func l1EntryPastEnd() throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        try img.patch(img.l1, (2 << 40) | Self.copied)
        let before = try img.bytes()
        let what = "L1 entry 0 points past the end of the file (L2 table at 2199023255552, file ends at \(before.count))"
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: what)) { try Qcow2Image(path: img.path) }
        // Read-only: opens, and the broken range answers errors without touching anything.
        let image = try Qcow2Image(path: img.path, readOnly: true)
        expectCorrupt(what) { _ = try read(image, at: 0) }
        try image.close()
        #expect(try img.bytes() == before)
    }

    /// An L1 entry naming the refcount table, or two naming one L2 table: refused at open.
    @Test func l1EntryIntoMetadata() throws {
        let dir = try TempDir()
        let img = try Layout(dir, size: "2G")  // four L1 entries
        try img.patch(img.l1 + 8, img.refcountTable | Self.copied)
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: "the L2 table of L1 entry 1 at \(img.refcountTable) overlaps the refcount table")) {
            try Qcow2Image(path: img.path)
        }
        try img.patch(img.l1 + 8, img.l2 | Self.copied)
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: "the L2 table of L1 entry 1 at \(img.l2) overlaps the active L2 table")) {
            try Qcow2Image(path: img.path)
        }
    }

    /// Refcounts that call the header free: the allocator must not hand it out.
    @Test func headerCountedFree() throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        try img.patch(img.refcountBlock, 0, bytes: 2)
        let before = try img.bytes()
        let image = try Qcow2Image(path: img.path)
        expectCorrupt("cluster 0 holds the qcow2 header but its refcount is 0") { try write(image, at: 128 << 10) }
        try image.close()
        #expect(withoutFeatures(try img.bytes()) == withoutFeatures(before))
    }

    @Test func compressedPastEnd() throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        try img.patch(img.l2 + 16, (1 << 62) | (1 << 40))  // compressed, 1 TiB in
        let image = try Qcow2Image(path: img.path, readOnly: true)
        expectCorrupt("compressed cluster at 1099511627776 starts past the end of the file") { _ = try read(image, at: 128 << 10) }
        #expect(try read(image, at: 0) == [UInt8](repeating: 0x5a, count: 4096))
    }

    @Test func hugeTables() throws {
        let dir = try TempDir()
        let img = try Layout(dir)
        try img.patch(56, 1 << 31, bytes: 4)  // refcount_table_clusters: 128 TiB of table
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: "refcount table of 2147483648 clusters is above 32 MiB")) {
            try Qcow2Image(path: img.path, readOnly: true)
        }
        try img.patch(56, 16, bytes: 4)  // 1 MiB of table in a file of 384 KiB
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: "refcount table extends past the end of the file")) {
            try Qcow2Image(path: img.path, readOnly: true)
        }
        try img.patch(56, 1, bytes: 4)
        try img.patch(40, 0xffff_ffff_ffff_0000)  // L1 offset whose end overflows 64 bits
        #expect(throws: Qcow2Error.corrupt(path: img.path, what: "L1 table extends past the end of the file")) {
            try Qcow2Image(path: img.path, readOnly: true)
        }
    }

    /// A dirty image (lazy refcounts) whose entry points far past the end, as a crash could leave
    /// it (data never flushed): the repair makes it read as zeros instead of growing the file.
    @Test func dirtyRepairDoesNotGrowFile() throws {
        let dir = try TempDir()
        let p = dir.file("c.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", p, "1M")
        try Qemu.io(p, "write -P 0x5a 0 128k")
        var d = try Data(contentsOf: URL(fileURLWithPath: p))
        let l2 = Int(Layout.be64(d, Int(Layout.be64(d, 40))) & 0x00ff_ffff_ffff_fe00)
        for (i, b) in (0..<8).map({ UInt8(truncatingIfNeeded: ((1 << 40) | Self.copied) >> (8 * UInt64(7 - $0))) }).enumerated() {
            d[l2 + 8 + i] = b
        }
        d[79] |= 1  // dirty
        try d.write(to: URL(fileURLWithPath: p))
        let image = try Qcow2Image(path: p)
        #expect(try read(image, at: 64 << 10) == [UInt8](repeating: 0, count: 4096))
        #expect(try read(image, at: 0) == [UInt8](repeating: 0x5a, count: 4096))
        try image.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: p)).count <= d.count)
        try Qemu.check(p, allowLeaks: true)
    }
}
