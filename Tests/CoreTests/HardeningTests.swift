import Foundation
import Glibc
import Logging
import Testing
@testable import BlockBackends
@testable import Core
@testable import Kernel
@testable import QAPI
@testable import QMP
@testable import Provisioning

/// Issue 15: each test reproduces one way the tool lost data or wedged.
@Suite(.serialized) struct HardeningTests {
    static let logger = Logger(label: "hardening-test")

    static func tempDir() -> String {
        var template = Array((NSTemporaryDirectory() + "hardening.XXXXXX").utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    static func record(_ name: String, pid: Int32 = 0) -> ExportRecord {
        ExportRecord(name: name, id: "e", device: "", image: "/nonexistent.img", size: 1 << 20, queues: 1, serial: "",
                     readOnly: false, pid: pid, socket: nil)
    }

    // MARK: 12 keyval nesting

    /// One 20000-part dotted key took 17-20 s and 420 MB (the prefix was re-joined at every depth).
    @Test func longDottedKeyIsQuick() {
        let key = Array(repeating: "a", count: 20000).joined(separator: ".")
        let start = Date()
        _ = try? KeyvalParser.parse("\(key)=1", impliedKey: nil)
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func deepButBoundedKeyStillParses() throws {
        let key = Array(repeating: "a", count: KeyvalParser.maxDepth).joined(separator: ".")
        var v = try KeyvalParser.parse("\(key)=1", impliedKey: nil)
        var depth = 0
        while case let .object(m) = v { v = m[0].value; depth += 1 }
        #expect(depth == KeyvalParser.maxDepth && v == .string("1"))
    }

    // MARK: 2 image locks

    /// Each open of the image is a separate lock owner, as two processes would be.
    static func lockImage(_ path: String, writable: Bool, forceShare: Bool = false) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        try #require(fd >= 0)
        do {
            try ImageLock.acquire(fd: fd, path: path, writable: writable, forceShare: forceShare)
        } catch {
            close(fd)  // as a failed export drops its backend: its locks go too
            throw error
        }
        return fd
    }

    /// Two writers on one image corrupted it silently; now the second gets QEMU's message.
    @Test func aSecondWriterIsRefused() throws {
        let image = Self.tempDir() + "/img"
        try #require(FileManager.default.createFile(atPath: image, contents: Data(count: 4096)))
        let writer = try Self.lockImage(image, writable: true)
        #expect {
            close(try Self.lockImage(image, writable: true))
        } throws: { "\($0)" == "Failed to get \"write\" lock\nIs another process using the image [\(image)]?" }
        #expect {
            close(try Self.lockImage(image, writable: false))
        } throws: { "\($0)".hasPrefix("Failed to get shared \"write\" lock") }
        let reader = try Self.lockImage(image, writable: false, forceShare: true)
        close(writer)  // the locks go with the open file
        close(reader)
        let readers = [try Self.lockImage(image, writable: false), try Self.lockImage(image, writable: false)]
        #expect(throws: (any Error).self) { close(try Self.lockImage(image, writable: true)) }
        readers.forEach { close($0) }
        close(try Self.lockImage(image, writable: true))
    }

    @Test func forceShareOnlyForReadOnlyNodes() throws {
        #expect(throws: OptionError("force-share=on can only be used with read-only images")) {
            try ServeConfiguration.build(objects: [], blockdevs: ["driver=file,node-name=f0,filename=/etc/hostname,force-share=on"],
                                         exports: [])
        }
        var context = CheckContext()
        context.deviceNameInUse = { _ in false }
        let c = try ServeConfiguration.build(
            objects: [], blockdevs: ["driver=file,node-name=f0,filename=/etc/hostname,read-only=on,force-share=on"],
            exports: ["type=vduse-blk,id=e,node-name=f0,name=fs0"], into: ServeConfiguration(context: context))
        #expect(c.exports.first?.backend.forceShare == true)
    }

    // MARK: 9 FIFO

    /// Opening a FIFO waited for a writer forever (`check`, `add --read-only`).
    @Test func probingAFIFODoesNotHang() throws {
        let fifo = Self.tempDir() + "/fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        let done = DispatchSemaphore(value: 0)
        Thread { _ = ServeConfiguration.probeOpen(fifo, false); done.signal() }.start()
        let finished = done.wait(timeout: .now() + 5) == .success
        if !finished {  // unblock the stuck open so the process can end
            let w = open(fifo, O_WRONLY | O_NONBLOCK)
            if w >= 0 { close(w) }
        }
        #expect(finished, "opening a FIFO blocked")
        guard finished else { return }  // the check below would block the same way
        #expect(throws: OptionError.self) {
            try ServeConfiguration.build(objects: [], blockdevs: ["driver=file,node-name=f0,filename=\(fifo),read-only=on"], exports: [])
        }
    }

    // MARK: 7 block devices

    /// `add /dev/sdX` built driver=file, which QEMU's checks refuse for a block device.
    @Test func addOfABlockDeviceUsesHostDevice() throws {
        let node = Self.tempDir() + "/blk"
        try #require(mknod(node, S_IFBLK | 0o600, dev_t(7 << 8)) == 0, "mknod needs root")  // loop0: major 7, minor 0
        let request = AddRequest(image: node)
        #expect(request.blockdevs.first?.hasPrefix("driver=host_device,") == true)
        let probe = ServeConfiguration(openProbe: { _, _ in .device })
        _ = try ServeConfiguration.build(objects: [], blockdevs: request.blockdevs, exports: [request.exportSpec], into: probe)
        #expect(AddRequest(image: "/etc/hostname").blockdevs.first?.hasPrefix("driver=file,") == true)
    }

    // MARK: 8 long names

    /// Names of 85-255 bytes: `/run/vduse-export/NAME.sock` did not fit sun_path, and
    /// `NAME.json.tmp` did not fit a file name.
    @Test func longestNamesHaveASocketAndARecord() throws {
        let name = String(repeating: "n", count: 255)
        let standard = StateDirectory(path: "/run/vduse-export")
        #expect(UnixSocketAddress(standard.socketPath(name)) != nil)
        #expect(standard.socketPath("short") == "/run/vduse-export/short.sock")
        #expect(standard.socketPath(name) != standard.socketPath(String(repeating: "m", count: 255)))
        let state = StateDirectory(path: Self.tempDir())
        try state.write(Self.record(name))
        #expect(state.read(name)?.name == name)
        #expect(state.all().map(\.name) == [name])
    }

    // MARK: 6 records

    /// A record that cannot be written (full /run, bad directory) was dropped silently: the
    /// export then ran unseen by list and del.
    @Test func aRecordThatCannotBeWrittenIsAnError() throws {
        let file = Self.tempDir() + "/file"
        try #require(FileManager.default.createFile(atPath: file, contents: Data()))
        let keeper = RecordKeeper(settings: ServeSettings(record: true, state: StateDirectory(path: file + "/state")))
        let plan = ExportPlan(id: "e", deviceName: "d", backend: BackendSpec(kind: .null(size: 0)))
        let status = ExportStatus(id: "e", name: "d", nodeName: "n", device: "/dev/vdz", sizeBytes: 0, numQueues: 1,
                                  serial: "", shuttingDown: false)
        #expect(throws: (any Error).self) { try keeper.add(plan, status) }
    }

    /// A damaged record: add said "name already in use" (exit 1), del "belongs to another
    /// program" (exit 6). Now add says what is wrong, and del removes it.
    @Test func aDamagedRecordCanBeDeleted() throws {
        let state = StateDirectory(path: Self.tempDir())
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

    // MARK: also: del ../x

    @Test func delRefusesAPathAsName() throws {
        let top = Self.tempDir()
        let state = StateDirectory(path: top + "/state")
        try state.prepare()
        try StateDirectory(path: top).write(Self.record("x"))
        #expect {
            try Provisioner(state: state, logger: Self.logger).delete(name: "../x", force: true)
        } throws: { ($0 as? ExportError)?.code == .invalidOptions }
        #expect(access(top + "/x.json", F_OK) == 0, "del ../x removed a file outside the state directory")
    }

    // MARK: also: add --timeout

    /// `add` waited for the server's ready line with no bound.
    @Test func addGivesUpAtItsDeadline() throws {
        let dir = Self.tempDir()
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
