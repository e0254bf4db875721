import Foundation
import Glibc
import Testing
@testable import Core
@testable import QAPI
@testable import Server
@testable import Wire

/// What a restarted server does with a record that says its export was switched.
@Suite struct SwitchRecordTests {
    static func state() -> StateDirectory {
        // As records name images: absolute, standardized, symlinks resolved.
        let dir = URL(fileURLWithPath: NSTemporaryDirectory() + "/switch-state-\(UUID().uuidString)").standardizedFileURL
            .resolvingSymlinksInPath().path
        mkdir(dir, 0o700)
        return StateDirectory(path: dir)
    }

    static func record(_ image: String, switched: SwitchedImage?) -> ExportRecord {
        var r = ExportRecord(name: "live", id: "live", device: "/dev/vda", image: image, size: 1 << 20, queues: 1, serial: "live",
                             readOnly: false, pid: 0, socket: nil)
        r.switched = switched
        return r
    }

    /// The configuration names an image a mirror deleted: it is checked as the one served now,
    /// and the plan gets that image; another configuration is left alone.
    @Test func restartServesTheRecordedImage() throws {
        let state = Self.state()
        defer { try? FileManager.default.removeItem(atPath: state.path) }
        let served = state.path + "/served.qcow2"
        _ = FileManager.default.createFile(atPath: served, contents: Data(count: 4096))
        let origin = state.path + "/gone.raw"
        try state.write(Self.record(served, switched: SwitchedImage(origin: origin, image: served, driver: .qcow2)))

        let probe = RecordKeeper.switchedProbe(state: state)
        guard case .regularFile = probe(origin, true) else { Issue.record("the origin is not probed as the served image"); return }
        guard case .failed = probe(state.path + "/other.raw", true) else { Issue.record("another missing file probed fine"); return }

        let keeper = RecordKeeper(settings: ServeSettings(record: true, state: state))
        let plan = ExportPlan(id: "live", deviceName: "live", backend: BackendSpec(kind: .file(path: origin)), writable: true)
        #expect(keeper.resuming(plan).backend.kind == .qcow2(Qcow2Spec(path: served)))
        var other = plan
        other.backend.kind = .file(path: state.path + "/else.raw")
        #expect(keeper.resuming(other) == other)
        var otherID = plan
        otherID.id = "x"
        #expect(keeper.resuming(otherID) == otherID)
    }

    /// A switch back to the image the configuration names clears the record's note; the
    /// overlay `add --overlay` made is no longer the record's to delete.
    @Test func switchedUpdatesTheRecord() throws {
        let state = Self.state()
        defer { try? FileManager.default.removeItem(atPath: state.path) }
        var r = Self.record("/img/a.qcow2", switched: nil)
        r.overlay = "/img/a.qcow2"
        r.base = "/img/base.raw"
        try state.write(r)
        let keeper = RecordKeeper(settings: ServeSettings(record: true, state: state))
        let a = BackendSpec(kind: .qcow2(Qcow2Spec(path: "/img/a.qcow2"))), base = BackendSpec(kind: .file(path: "/img/base.raw"))
        try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: a, to: base))
        let after = try #require(state.read("live"))
        #expect(after.image == "/img/base.raw" && after.switched == SwitchedImage(origin: "/img/a.qcow2", image: "/img/base.raw", driver: .file))
        #expect(after.overlay == nil && after.base == nil)
        try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: base, to: a))
        #expect(try #require(state.read("live")).switched == nil)
    }
}
