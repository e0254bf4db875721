import Foundation
import Glibc
import QCOW2
import Testing
import TestSupport
@testable import BlockBackends
@testable import Core
@testable import QAPI

/// Backends as an export opens them: qcow2 chains take QEMU's locks, so many overlays read one
/// base and nobody writes it.
@Suite struct ExportFactoryTests {
    static func open(_ path: String, writable: Bool) throws -> any BlockBackend {
        let plan = ExportPlan(id: "e", deviceName: "d", backend: BackendSpec(kind: .qcow2(Qcow2Spec(path: path)), readOnly: !writable),
                              writable: writable, numQueues: 1, serial: "")
        return try ExportFactory.openBackend(plan)
    }

    @Test func overlaysShareTheirBaseAndNobodyWritesIt() throws {
        let dir = try TempDir.make()
        let base = dir + "/base.raw"
        _ = FileManager.default.createFile(atPath: base, contents: Data(repeating: 7, count: 1 << 20))
        try Qcow2Image.create(path: dir + "/a.qcow2", backing: (path: base, format: .raw))
        try Qcow2Image.create(path: dir + "/b.qcow2", backing: (path: base, format: .raw))
        let a = try Self.open(dir + "/a.qcow2", writable: true)
        let b = try Self.open(dir + "/b.qcow2", writable: true)  // a second overlay on the same base
        #expect { _ = try Self.open(dir + "/a.qcow2", writable: true) } throws: {
            "\($0)".hasPrefix("Failed to get \"write\" lock")
        }
        #expect { close(try Fixtures.lockImage(base, writable: true)) } throws: {
            "\($0)" == "Failed to get \"write\" lock\nIs another process using the image [\(base)]?"
        }
        _ = (a, b)
    }
}
