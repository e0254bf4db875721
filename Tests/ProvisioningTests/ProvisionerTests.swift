import Foundation
import Glibc
import Logging
import Testing
import TestSupport
@testable import Kernel
@testable import Provisioning
@testable import Wire

/// The client's provisioner against a state directory of its own: records it cannot read, names
/// that are paths, a server that never becomes ready.
@Suite(.serialized) struct ProvisionerTests {
    static let logger = Logger(label: "provisioner-test")

    /// A damaged record: add said "name already in use" (exit 1), del "belongs to another
    /// program" (exit 6). Now add says what is wrong, and del removes it.
    @Test func aDamagedRecordCanBeDeleted() throws {
        let state = StateDirectory(path: try TempDir.make())
        try state.prepare()
        let path = state.recordPath("web")
        try Data("{\"name\": \"web\", \"dev".utf8).write(to: URL(fileURLWithPath: path))
        let provisioner = Provisioner(state: state, logger: Self.logger)
        var request = AddRequest(image: "/etc/hostname")
        request.name = "web"
        #expect {
            _ = try provisioner.existing(request)
        } throws: { ($0 as? ExportError)?.code == .conflict && "\($0)".contains("damaged") }
        try provisioner.delete(name: "web", force: false)
        #expect(access(path, F_OK) != 0)
    }

    /// `del ../x` removed a file outside the state directory.
    @Test func delRefusesAPathAsName() throws {
        let top = try TempDir.make()
        let state = StateDirectory(path: top + "/state")
        try state.prepare()
        try StateDirectory(path: top).write(Fixtures.record("x"))
        #expect {
            try Provisioner(state: state, logger: Self.logger).delete(name: "../x", force: true)
        } throws: { ($0 as? ExportError)?.code == .invalidOptions }
        #expect(access(top + "/x.json", F_OK) == 0, "del ../x removed a file outside the state directory")
    }

    /// `add` waited for the server's ready line with no bound.
    @Test func addGivesUpAtItsDeadline() throws {
        let dir = try TempDir.make()
        let script = dir + "/never-ready"
        try "#!/bin/sh\nexec sleep 60\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let provisioner = Provisioner(state: StateDirectory(path: dir + "/state"), logger: Self.logger)
        let start = Date()
        #expect {
            _ = try provisioner.start(AddRequest(image: "/etc/hostname"), serveArguments: [],
                                      deadline: .after(seconds: 1), executable: script)
        } throws: { "\($0)".contains("not ready within") }
        #expect(Date().timeIntervalSince(start) < 10)
    }
}
