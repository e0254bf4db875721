import Foundation
import Synchronization
import Testing
@testable import Provisioning
import Kernel
@testable import Wire

@Suite struct PersistenceTests {
    final class Calls: Sendable {
        private let calls = Mutex<[[String]]>([])
        var list: [[String]] { calls.withLock { $0 } }
        func append(_ call: [String]) { calls.withLock { $0.append(call) } }
    }

    func setup() -> (PersistentExports, Calls, (([String]) throws(ProvisioningError) -> Void)) {
        let root = NSTemporaryDirectory() + "persist-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: root + "/systemd", withIntermediateDirectories: true)
        let calls = Calls()
        return (PersistentExports(configDirectory: root + "/etc", unitDirectory: root + "/systemd"), calls, { calls.append($0) })
    }

    let arguments = ["--blockdev", "driver=file,node-name=file0,filename=/srv/web01.img", "--export", "type=vduse-blk,id=web01,name=web01,serial=WEB-01"]

    @Test func persistWritesTheConfigurationAndEnablesTheUnit() throws {
        let (p, calls, systemctl) = setup()
        #expect(try p.persist(name: "web01", serveArguments: arguments, image: "/srv/web01.img", systemctl: systemctl))
        let config = try String(contentsOfFile: p.configPath("web01"), encoding: .utf8)
        #expect(config.contains("\nVDUSE_EXPORT_ARGS=--blockdev driver=file,node-name=file0,filename=/srv/web01.img --export type=vduse-blk,id=web01,name=web01,serial=WEB-01\n"))
        let dropIn = try String(contentsOfFile: p.dropInPath("web01"), encoding: .utf8)
        #expect(dropIn.contains("[Unit]\nRequiresMountsFor=/srv/web01.img\n"))
        #expect(p.dropInPath("web01").hasSuffix("/systemd/vduse-export@web01.service.d/persist.conf"))
        #expect(calls.list == [["enable", "--quiet", "vduse-export@web01.service"]])
        #expect(p.isPersistent("web01"))
    }

    @Test func persistIsIdempotent() throws {
        let (p, calls, systemctl) = setup()
        try p.persist(name: "web01", serveArguments: arguments, image: "/srv/web01.img", systemctl: systemctl)
        #expect(try !p.persist(name: "web01", serveArguments: arguments, image: "/srv/web01.img", systemctl: systemctl))
        #expect(calls.list.count == 2)  // enabling again is harmless and repairs a removed link
    }

    @Test func forgetUndoesPersistAndIsIdempotent() throws {
        let (p, calls, systemctl) = setup()
        try p.persist(name: "web01", serveArguments: arguments, image: "/srv/web01.img", systemctl: systemctl)
        #expect(try p.forget(name: "web01", systemctl: systemctl))
        #expect(!FileManager.default.fileExists(atPath: p.configPath("web01")))
        #expect(!FileManager.default.fileExists(atPath: p.dropInDirectory("web01")))
        #expect(calls.list.last == ["disable", "--quiet", "vduse-export@web01.service"])
        #expect(try !p.forget(name: "web01", systemctl: systemctl))
        #expect(calls.list.count == 2)
    }

    @Test(arguments: ["filename=/srv/my disk.img", "filename=/srv/a\"b", "serial=$HOME", "filename=/srv/50%"])
    func refusesWhatAnEnvironmentFileCannotCarry(argument: String) {
        let (p, calls, systemctl) = setup()
        #expect(throws: ProvisioningError.self) {
            try p.persist(name: "x", serveArguments: ["--blockdev", argument], image: "/srv/x", systemctl: systemctl)
        }
        #expect(!FileManager.default.fileExists(atPath: p.configPath("x")))
        #expect(calls.list.isEmpty)
    }

    @Test func aFailingSystemctlIsReported() {
        let (p, _, _) = setup()
        #expect(throws: ProvisioningError.self) {
            try p.persist(name: "web01", serveArguments: arguments, image: "/srv/web01.img") { (_: [String]) throws(ProvisioningError) in
                throw ProvisioningError(.kernel, "no systemd")
            }
        }
    }
}
