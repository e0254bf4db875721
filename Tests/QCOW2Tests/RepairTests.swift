import Foundation
import QCOW2
import Testing
import TestSupport

/// A crash with lazy refcounts leaves the dirty bit and wrong counts; a writable open repairs them.
@Suite struct Qcow2RepairTests {
    func be64(_ d: Data, _ at: Int) -> UInt64 { d[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) } }

    @Test func dirtyImageIsRepaired() throws {
        let dir = try TempDir()
        let p = dir.file("d.qcow2")
        try Qemu.img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", p, "8M")
        try Qemu.io(p, "write -P 0x21 0 200k", "write -P 0x22 5M 64k")
        let expected = try Qemu.rawBytes(p)

        // What a crash could leave: a data cluster counted 0, a stray cluster counted 1, dirty bit.
        let d = try Data(contentsOf: URL(fileURLWithPath: p))
        let block = Int(be64(d, Int(be64(d, 48))))
        let l2 = Int(be64(d, Int(be64(d, 40))) & 0x00ff_ffff_ffff_fe00)
        let dataCluster = Int(be64(d, l2) & 0x00ff_ffff_ffff_fe00) >> 16
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: p))
        try h.seek(toOffset: UInt64(block + 2 * dataCluster))
        h.write(Data([0, 0]))
        try h.seek(toOffset: UInt64(block + 2 * 200))
        h.write(Data([0, 1]))
        try h.seek(toOffset: 72)
        h.write(Data([0, 0, 0, 0, 0, 0, 0, 1]))
        try h.close()
        let broken = try Qemu.run("qemu-img", ["check", p], allowFailure: true)
        #expect(broken.status != 0, "the damage should be visible to qemu-img check:\n\(broken.output)")

        let image = try Qcow2Image(path: p)
        try image.close()
        try Qemu.check(p)
        #expect(try Qemu.rawBytes(p) == expected)
    }
}
