import Foundation
import Glibc
import Logging
@testable import BlockBackends
import QCOW2
import Testing
@testable import Core
@testable import Kernel
@testable import Provisioning
@testable import QAPI

/// add --overlay without a kernel: the overlay file, its reuse and refusal, the record's memory
/// of it across a restart, and qcow2 locks (many overlays read one base; nobody writes it).
@Suite struct OverlayTests {
    static func setup() -> (dir: String, base: String, provisioner: Provisioner) {
        let dir = HardeningTests.tempDir()
        let base = dir + "/base.raw"
        _ = FileManager.default.createFile(atPath: base, contents: Data(repeating: 7, count: 1 << 20))
        return (dir, base, Provisioner(state: StateDirectory(path: dir + "/state"), logger: Logger(label: "test")))
    }

    static func request(_ overlay: String, base: String) -> AddRequest {
        var r = AddRequest(image: overlay)
        r.overlayBase = base
        r.format = .qcow2
        return r
    }

    @Test func createsAQcow2OverBaseAndRefusesSomeoneElsesFile() throws {
        let (dir, base, p) = Self.setup()
        let r = Self.request(dir + "/ov.qcow2", base: base)
        #expect(try p.createOverlay(r))
        let image = try Qcow2Image(path: dir + "/ov.qcow2", readOnly: true)
        #expect(image.backingPath == base && image.virtualSize == 1 << 20)
        try image.close()
        #expect(r.blockdevs(isBlockDevice: { _ in false }).last == "driver=qcow2,node-name=disk0,file=file0")
        // Not this export's overlay (no record says so): refused, and left alone.
        #expect { try p.createOverlay(r) } throws: { ($0 as? ExportError)?.code == .conflict }
        // Its own overlay from before (the server died): reused.
        var record = HardeningTests.record(r.resolvedName)
        record.overlay = r.absoluteImage
        try p.state.write(record)
        #expect(try p.createOverlay(r) == false)
        // A missing base: nothing created.
        let missing = Self.request(dir + "/m.qcow2", base: dir + "/nosuch")
        #expect { try p.createOverlay(missing) } throws: { ($0 as? ExportError)?.code == .invalidOptions }
        #expect(access(dir + "/m.qcow2", F_OK) != 0)
    }

    @Test func aRestartedServerKeepsTheOverlayInItsRecord() {
        var old = HardeningTests.record("ov")
        old.overlay = "/o.qcow2"; old.base = "/b.raw"; old.created = Timestamp(secondsSince1970: 100)
        var new = HardeningTests.record("ov")
        new.restarts = 1
        let kept = new.keepingCreation(from: old)
        #expect(kept.overlay == "/o.qcow2" && kept.base == "/b.raw" && kept.created == Timestamp(secondsSince1970: 100))
        new.restarts = 0  // a fresh export of the name: nothing inherited
        let fresh = new.keepingCreation(from: old)
        #expect(fresh.overlay == nil && fresh.created != Timestamp(secondsSince1970: 100))
    }

    static func open(_ path: String, writable: Bool) throws -> any BlockBackend {
        let plan = ExportPlan(id: "e", deviceName: "d", backend: BackendSpec(kind: .qcow2(Qcow2Spec(path: path)), readOnly: !writable),
                              writable: writable, numQueues: 1, serial: "")
        return try ExportFactory.openBackend(plan)
    }

    @Test func overlaysShareTheirBaseAndNobodyWritesIt() throws {
        let (dir, base, _) = Self.setup()
        try Qcow2Image.create(path: dir + "/a.qcow2", backing: (path: base, format: .raw))
        try Qcow2Image.create(path: dir + "/b.qcow2", backing: (path: base, format: .raw))
        let a = try Self.open(dir + "/a.qcow2", writable: true)
        let b = try Self.open(dir + "/b.qcow2", writable: true)  // a second overlay on the same base
        #expect { _ = try Self.open(dir + "/a.qcow2", writable: true) } throws: {
            "\($0)".hasPrefix("Failed to get \"write\" lock")
        }
        #expect { close(try HardeningTests.lockImage(base, writable: true)) } throws: {
            "\($0)" == "Failed to get \"write\" lock\nIs another process using the image [\(base)]?"
        }
        _ = (a, b)
    }

    /// Combinations refused before anything is created (usage errors).
    @Test func refusedCombinations() throws {
        let dir = HardeningTests.tempDir()
        for args in [["add", dir + "/b.img", dir + "/o.qcow2"], ["add", dir + "/b.img", "--overlay", "--persist"],
                     ["add", dir + "/b.img", "--overlay", "--read-only"], ["add", dir + "/b.img", "--overlay", "--foreground"]] {
            let r = try CLITests.run(args)
            #expect(r.status == 64, "\(args): \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}
