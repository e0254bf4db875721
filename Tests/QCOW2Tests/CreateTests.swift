import Foundation
import QCOW2
import Testing
import TestSupport

/// Images we create: qemu-img must find them clean and see the same backing chain we do.
@Suite struct Qcow2CreateTests {
    @Test(arguments: [512, 4096, 65536, 2 << 20])
    func empty(_ clusterSize: Int) throws {
        let dir = try TempDir()
        let p = dir.file("new.qcow2")
        try Qcow2Image.create(path: p, size: 64 << 20, clusterSize: clusterSize)
        try Qemu.check(p)
        let info = try Qemu.run("qemu-img", ["info", p]).output
        #expect(info.contains("virtual size: 64 MiB (67108864 bytes)") && info.contains("cluster_size: \(clusterSize)"), "\(info)")
        try Workload(image: p, clusterSize: clusterSize, version: 3).run(seed: UInt64(clusterSize), ops: 30)
    }

    @Test func refusesAnExistingFile() throws {
        let dir = try TempDir()
        let p = dir.file("x.qcow2")
        try Qcow2Image.create(path: p, size: 1 << 20)
        #expect(throws: Qcow2Error.io(path: p, operation: "create", errno: EEXIST)) { try Qcow2Image.create(path: p, size: 1 << 20) }
    }

    /// The provisioning pattern: one read-only base, an overlay per host, each written differently.
    @Test func twoOverlaysOnOneBase() throws {
        let dir = try TempDir()
        try makeSparseRaw(dir.file("base.raw"), size: 8 << 20, seed: 31)
        let base = try Data(contentsOf: URL(fileURLWithPath: dir.file("base.raw")))
        for (i, name) in ["a.qcow2", "b.qcow2"].enumerated() {
            try Qcow2Image.create(path: dir.file(name), backing: (path: "base.raw", format: .raw))
            let info = try Qemu.run("qemu-img", ["info", dir.file(name)]).output
            #expect(info.contains("backing file: base.raw") && info.contains("backing file format: raw"), "\(info)")
            var w = Workload(image: dir.file(name), clusterSize: 65536, version: 3,
                             backingView: [UInt8](base))
            w.checkBetweenOps = i == 0
            try w.run(seed: 40 + UInt64(i), ops: 30)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("base.raw"))) == base, "the base changed")
        let differ = try Qemu.run("qemu-img", ["compare", "-q", dir.file("a.qcow2"), dir.file("b.qcow2")], allowFailure: true)
        #expect(differ.status == 1, "the two overlays should differ")
    }

    @Test func overlayOverQcow2TakesItsSize() throws {
        let dir = try TempDir()
        try Qemu.img("create", "-q", "-f", "qcow2", dir.file("golden.qcow2"), "3G")
        try Qcow2Image.create(path: dir.file("o.qcow2"), backing: (path: dir.file("golden.qcow2"), format: .qcow2))
        let image = try Qcow2Image(path: dir.file("o.qcow2"), readOnly: true)
        #expect(image.virtualSize == 3 << 30)
        #expect(image.backingPath == dir.file("golden.qcow2"))
        try image.close()
        try Qemu.check(dir.file("o.qcow2"))
    }
}
