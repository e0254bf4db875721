import Foundation
import Testing
@testable import Provisioning
@testable import Wire

@Suite struct ResizeTests {
    @Test(arguments: [
        ("2147483648", UInt64(2 << 30)), ("2G", 2 << 30), ("2g", 2 << 30), ("512k", 512 << 10), ("+1G", 2 << 30),
        ("-512M", 512 << 20), ("1T", 1 << 40), ("+0", 1 << 30),
    ] as [(String, UInt64)])
    func parsesSizes(text: String, bytes: UInt64) throws {
        #expect(try SizeArgument.parse(text, current: 1 << 30) == bytes)
    }

    @Test(arguments: ["", "G", "1.5G", "12x", "-1G", "-2G", "0", "1000", "+", "18446744073709551615", "99999999999P", "١G"])
    func refusesBadSizes(text: String) {
        #expect(throws: ProvisioningError.self) { try SizeArgument.parse(text, current: 1 << 30) }
    }

    /// A fake /sys/block/vdz with two partitions: vdz1 (sectors 2048..+2048), vdz2 (4096..+8192).
    func sysBlock() throws -> String {
        let root = NSTemporaryDirectory() + "shrink-\(UUID().uuidString)"
        for (part, start, size) in [("vdz1", 2048, 2048), ("vdz2", 4096, 8192)] {
            let dir = "\(root)/vdz/\(part)"
            try FileManager.default.createDirectory(atPath: "\(dir)/holders", withIntermediateDirectories: true)
            try "\(start)\n".write(toFile: "\(dir)/start", atomically: true, encoding: .utf8)
            try "\(size)\n".write(toFile: "\(dir)/size", atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: "\(root)/vdz/holders", withIntermediateDirectories: true)
        return root
    }

    @Test func nothingMountedAllowsAnyShrink() throws {
        let sys = try sysBlock()
        #expect(ShrinkGuard.protectedEnd(disk: "vdz", size: 1 << 30, mounts: "/dev/vda1 / ext4 rw 0 0\n", sysBlock: sys) == nil)
    }

    @Test func mountedPartitionProtectsUpToItsEnd() throws {
        let sys = try sysBlock()
        let end = try #require(ShrinkGuard.protectedEnd(disk: "vdz", size: 1 << 30, mounts: "/dev/vdz1 /mnt/a ext4 rw 0 0\n", sysBlock: sys))
        #expect(end.bytes == (2048 + 2048) * 512)
        #expect(end.reason == "/dev/vdz1 is mounted on /mnt/a")
    }

    @Test func theLastInUsePartitionWins() throws {
        let sys = try sysBlock()
        try FileManager.default.createDirectory(atPath: "\(sys)/vdz/vdz2/holders/dm-0", withIntermediateDirectories: true)
        let end = try #require(ShrinkGuard.protectedEnd(disk: "vdz", size: 1 << 30, mounts: "/dev/vdz1 /mnt/a ext4 rw 0 0\n", sysBlock: sys))
        #expect(end.bytes == (4096 + 8192) * 512)
        #expect(end.reason == "/dev/vdz2 is held by dm-0")
    }

    @Test func mountedWholeDiskProtectsAll() throws {
        let sys = try sysBlock()
        let end = try #require(ShrinkGuard.protectedEnd(disk: "vdz", size: 1 << 30, mounts: "/dev/vdz /srv ext4 rw 0 0\n", sysBlock: sys))
        #expect(end.bytes == 1 << 30)
    }
}
