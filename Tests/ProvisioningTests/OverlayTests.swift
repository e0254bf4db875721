import Foundation
import Glibc
import Logging
import QCOW2
import Testing
import TestSupport
@testable import Kernel
@testable import Provisioning
@testable import QAPI
@testable import Wire

/// add --overlay without a kernel: the overlay file, its reuse and refusal, the record's memory
/// of it across a restart, and the usage errors.
@Suite struct OverlayTests {
    static func setup() -> (dir: String, base: String, provisioner: Provisioner) {
        let dir = try! TempDir.make()
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
        var record = Fixtures.record(r.resolvedName)
        record.overlay = r.absoluteImage
        try p.state.write(record)
        #expect(try p.createOverlay(r) == false)
        // A missing base: nothing created.
        let missing = Self.request(dir + "/m.qcow2", base: dir + "/nosuch")
        #expect { try p.createOverlay(missing) } throws: { ($0 as? ExportError)?.code == .invalidOptions }
        #expect(access(dir + "/m.qcow2", F_OK) != 0)
    }

    @Test func aRestartedServerKeepsTheOverlayInItsRecord() {
        var old = Fixtures.record("ov")
        old.overlay = "/o.qcow2"; old.base = "/b.raw"; old.created = Timestamp(secondsSince1970: 100)
        var new = Fixtures.record("ov")
        new.restarts = 1
        let kept = new.keepingCreation(from: old)
        #expect(kept.overlay == "/o.qcow2" && kept.base == "/b.raw" && kept.created == Timestamp(secondsSince1970: 100))
        new.restarts = 0  // a fresh export of the name: nothing inherited
        let fresh = new.keepingCreation(from: old)
        #expect(fresh.overlay == nil && fresh.created != Timestamp(secondsSince1970: 100))
    }

    /// Combinations refused before anything is created (usage errors).
    @Test func refusedCombinations() throws {
        let dir = (try TempDir.make())
        for args in [["add", dir + "/b.img", dir + "/o.qcow2"], ["add", dir + "/b.img", "--overlay", "--persist"],
                     ["add", dir + "/b.img", "--overlay", "--read-only"], ["add", dir + "/b.img", "--overlay", "--foreground"]] {
            let r = try BuiltCommand.run(args)
            #expect(r.status == 64, "\(args): \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}
