import Foundation
import Testing
import TestSupport
import QAPI
@testable import Server
@testable import Wire

/// The server's keeping of its state record.
@Suite struct RecordKeeperTests {
    /// A record that cannot be written (full /run, bad directory) was dropped silently: the
    /// export then ran unseen by list and del.
    @Test func aRecordThatCannotBeWrittenIsAnError() throws {
        let file = try TempDir.make() + "/file"
        try #require(FileManager.default.createFile(atPath: file, contents: Data()))
        let keeper = RecordKeeper(settings: ServeSettings(record: true, state: StateDirectory(path: file + "/state")))
        let plan = ExportPlan(id: "e", deviceName: "d", backend: BackendSpec(kind: .null(size: 0)))
        let status = ExportStatus(id: "e", name: "d", nodeName: "n", device: "/dev/vdz", sizeBytes: 0, numQueues: 1,
                                  serial: "", shuttingDown: false)
        #expect(throws: (any Error).self) { try keeper.add(plan, status) }
    }
}
