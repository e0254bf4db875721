import Foundation
import Glibc
import Testing
@testable import Core
@testable import QAPI
@testable import Provisioning
@testable import Server
import Wire

/// What follows a live switch besides the disk: the record for network targets, a persistent
/// export's configuration, and the job `list` shows.
@Suite struct LiveFollowTests {
    /// A mirror to an NBD export or RBD image: the record names the URI, and a server started
    /// again with the configuration's file node serves that network image.
    @Test func recordFollowsANetworkTarget() throws {
        let state = SwitchRecordTests.state()
        defer { try? FileManager.default.removeItem(atPath: state.path) }
        try state.write(SwitchRecordTests.record(state.path + "/disk.raw", switched: nil))
        let keeper = RecordKeeper(settings: ServeSettings(record: true, state: state))
        let file = BackendSpec(kind: .file(path: state.path + "/disk.raw"))
        let nbd = BackendSpec(kind: .nbd(NBDSpec(server: .unix(path: "/run/t.sock"), export: "t")))
        try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: file, to: nbd))
        let after = try #require(state.read("live"))
        #expect(after.image == "nbd+unix:///t?socket=/run/t.sock")
        #expect(after.switched == SwitchedImage(origin: state.path + "/disk.raw", image: after.image, driver: .nbd))
        let plan = ExportPlan(id: "live", deviceName: "live", backend: file, writable: true)
        #expect(keeper.resuming(plan).backend.kind == .nbd(NBDSpec(server: .unix(path: "/run/t.sock"), export: "t")))
        // The configuration's file is gone (deleted after the mirror): it still passes the probe.
        guard case .regularFile = RecordKeeper.switchedProbe(state: state)(state.path + "/disk.raw", true) else {
            Issue.record("the origin of a network switch is not probed as a file"); return
        }

        let rbd = BackendSpec(kind: .rbd(RBDSpec(pool: "rbd", image: "moved", conf: "/etc/ceph/c.conf", user: "admin")))
        try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: nbd, to: rbd))
        let again = try #require(state.read("live"))
        #expect(again.image == "rbd:rbd/moved:conf=/etc/ceph/c.conf:id=admin" && again.switched?.driver == .rbd)
        #expect(keeper.resuming(plan).backend.kind == rbd.kind)
    }

    /// The probe `mirror` makes of a network target, through a real backend (a file here): the
    /// size, and whether the first MiB is all zeros (data beyond it does not count).
    @Test func probeReadsSizeAndHead() throws {
        let path = NSTemporaryDirectory() + "probe-\(UUID().uuidString).raw"
        defer { unlink(path) }
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, 4 << 20) == 0)
        let spec = BackendSpec(kind: .file(path: path))
        #expect(try TargetProbe.inspect(spec) == TargetProbe(size: 4 << 20, headIsZero: true))
        var one: UInt8 = 1
        #expect(pwrite(fd, &one, 1, 2 << 20) == 1)
        #expect(try TargetProbe.inspect(spec).headIsZero)
        #expect(pwrite(fd, &one, 1, (1 << 20) - 1) == 1)
        #expect(try !TargetProbe.inspect(spec).headIsZero)
        #expect(try TargetProbe.inspect(BackendSpec(kind: .null(size: 8 << 20))) == TargetProbe(size: 8 << 20, headIsZero: true))
        #expect(throws: (any Error).self) { try TargetProbe.inspect(BackendSpec(kind: .file(path: path + ".missing"))) }
    }

    static let persisted = ["--object", "iothread,id=t0", "--blockdev", "driver=file,node-name=file0,filename=/srv/db.img",
                            "--blockdev", "driver=raw,node-name=disk0,file=file0",
                            "--export", "type=vduse-blk,id=db,node-name=disk0,name=db,writable=on,num-queues=1,serial=DB-1"]

    /// The configuration's nodes are replaced by the new image's; objects and the export stay.
    @Test func configurationFollowsTheSwitch() throws {
        let qcow2 = try PersistentExports.followedArguments(Self.persisted, name: "db", image: "/srv/db-1.qcow2", format: .qcow2)
        #expect(qcow2 == ["--object", "iothread,id=t0",
                          "--blockdev", "driver=file,node-name=file0,filename=/srv/db-1.qcow2",
                          "--blockdev", "driver=qcow2,node-name=disk0,file=file0",
                          "--export", "type=vduse-blk,id=db,node-name=disk0,name=db,writable=on,num-queues=1,serial=DB-1"])
        let nbd = try PersistentExports.followedArguments(qcow2, name: "db", image: "nbd://10.0.0.2:10810/db", format: .raw)
        #expect(nbd == ["--object", "iothread,id=t0",
                        "--blockdev", "driver=nbd,node-name=disk0,server.type=inet,server.host=10.0.0.2,server.port=10810,export=db",
                        "--export", "type=vduse-blk,id=db,node-name=disk0,name=db,writable=on,num-queues=1,serial=DB-1"])
        let rbd = try PersistentExports.followedArguments(nbd, name: "db", image: "rbd:pool/db:id=admin", format: .raw)
        #expect(rbd[2] == "--blockdev" && rbd[3] == "driver=rbd,node-name=disk0,pool=pool,image=db,user=admin")

        // Not what add --persist writes: refused, the configuration stays as it is.
        #expect(throws: ProvisioningError.self) {
            try PersistentExports.followedArguments(Self.persisted + ["--export", "type=vduse-blk,id=b,node-name=disk0,name=b"],
                                                    name: "db", image: "/srv/x.raw", format: .raw)
        }
        #expect(throws: ProvisioningError.self) {
            try PersistentExports.followedArguments(Self.persisted.map { $0.replacingOccurrences(of: "disk0", with: "n1") },
                                                    name: "db", image: "/srv/x.raw", format: .raw)
        }
    }

    /// `follow` replaces the file and the drop-in, through a temporary file.
    @Test func followWritesTheConfiguration() throws {
        let root = NSTemporaryDirectory() + "follow-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/systemd", withIntermediateDirectories: true)
        let p = PersistentExports(configDirectory: root + "/etc", unitDirectory: root + "/systemd")
        try p.persist(name: "db", serveArguments: Self.persisted, image: "/srv/db.img", systemctl: { _ in })
        try p.follow(name: "db", image: "nbd+unix:///db?socket=/run/n.sock", format: .raw)
        let after = try String(contentsOfFile: p.configPath("db"), encoding: .utf8)
        #expect(after.contains("--blockdev driver=nbd,node-name=disk0,server.type=unix,server.path=/run/n.sock,export=db --export"))
        #expect(!after.contains("/srv/db.img"))
        #expect(PersistentExports.serveArguments(in: after).count == Self.persisted.count - 2)
        let dropIn = try String(contentsOfFile: p.dropInPath("db"), encoding: .utf8)
        #expect(dropIn.contains("After=network-online.target") && !dropIn.contains("RequiresMountsFor"))
        #expect(access(p.configPath("db") + ".tmp", F_OK) != 0)
    }

    /// A persistent export's switch: the record, then the configuration. A server killed between
    /// the two comes back on the new image, and makes the configuration follow then (the other
    /// order left a window where the restarted server wrote to the old image while the
    /// configuration, read at the next boot, named the new one). A configuration that cannot
    /// follow, or cannot be written, refuses the switch with the record as it was.
    @Test func recordFirstThenTheConfiguration() throws {
        let state = SwitchRecordTests.state()
        defer { try? FileManager.default.removeItem(atPath: state.path) }
        try FileManager.default.createDirectory(atPath: state.path + "/systemd", withIntermediateDirectories: true)
        let p = PersistentExports(configDirectory: state.path + "/etc", unitDirectory: state.path + "/systemd")
        let source = state.path + "/disk.raw", moved = state.path + "/moved.raw"
        let arguments = Self.persisted.map { $0.replacingOccurrences(of: "/srv/db.img", with: source) }
        try p.persist(name: "live", serveArguments: arguments, image: source, systemctl: { _ in })
        let original = try String(contentsOfFile: p.configPath("live"), encoding: .utf8)
        let keeper = RecordKeeper(settings: ServeSettings(record: true, state: state), persistent: p)
        let file = BackendSpec(kind: .file(path: source))
        let plan = ExportPlan(id: "live", deviceName: "live", backend: file, writable: true)

        // Killed after the record, before the configuration: the next server follows.
        try state.write(SwitchRecordTests.record(moved, switched: SwitchedImage(origin: source, image: moved, driver: .file)))
        #expect(keeper.resuming(plan).backend.kind == .file(path: moved))
        let followed = try String(contentsOfFile: p.configPath("live"), encoding: .utf8)
        #expect(followed.contains("filename=\(moved) ") && !followed.contains(source))

        // A whole switch, from the original configuration and record.
        _ = FileManager.default.createFile(atPath: p.configPath("live"), contents: Data(original.utf8))
        let before = SwitchRecordTests.record(source, switched: nil)
        try state.write(before)
        let nbd = BackendSpec(kind: .nbd(NBDSpec(server: .unix(path: "/run/t.sock"), export: "t")))
        try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: file, to: nbd))
        #expect(try #require(state.read("live")).image == "nbd+unix:///t?socket=/run/t.sock")
        #expect(try String(contentsOfFile: p.configPath("live"), encoding: .utf8).contains("driver=nbd,node-name=disk0"))

        // The configuration cannot be written (its temporary file's name is taken by a directory).
        _ = FileManager.default.createFile(atPath: p.configPath("live"), contents: Data(original.utf8))
        try state.write(before)
        try FileManager.default.createDirectory(atPath: p.configPath("live") + ".tmp", withIntermediateDirectories: false)
        #expect(throws: (any Error).self) { try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: file, to: nbd)) }
        #expect(try #require(state.read("live")) == before)
        #expect(try String(contentsOfFile: p.configPath("live"), encoding: .utf8) == original)
        rmdir(p.configPath("live") + ".tmp")

        // Not what add --persist writes: refused before the record is touched.
        let two = try PersistentExports.configText(name: "live", serveArguments: arguments + ["--export", "type=vduse-blk,id=b,node-name=disk0,name=b"])
        _ = FileManager.default.createFile(atPath: p.configPath("live"), contents: Data(two.utf8))
        #expect(throws: ProvisioningError.self) { try keeper.switched(BackendSwitch(name: "live", exportID: "live", from: file, to: nbd)) }
        #expect(try #require(state.read("live")) == before)
    }

    /// `list`: the job and its progress beside the record's fields.
    @Test func listShowsTheJob() throws {
        var r = ExportRecord(name: "live", id: "live", device: "/dev/vda", image: "/srv/a.raw", size: 1 << 30, queues: 2,
                             serial: "live", readOnly: false, pid: 42, socket: nil)
        r.restarts = 0
        let job = JobRecord(pid: 42, id: "mirror-live", type: "mirror", status: "running", offset: 450 << 20, length: 1 << 30)
        #expect(job.summary == "mirror 43%")
        #expect(JobRecord(pid: 42, id: "c", type: "commit", status: "ready", offset: 5, length: 5).summary == "commit 100% ready")
        #expect(JobRecord(pid: 42, id: "c", type: "commit", status: "created", offset: 0, length: 0).summary == "commit 0% created")
        // More copied than the last estimate (the disk was written meanwhile): never above 100.
        #expect(JobRecord(pid: 1, id: "m", type: "mirror", status: "running", offset: 9, length: 8).percent == 100)
        #expect(ListEntry.line(r, state: .running, job: job) == "live             /dev/vda   running    42       0   /srv/a.raw  mirror 43%")
        #expect(ListEntry.line(r, state: .running, job: nil) == "live             /dev/vda   running    42       0   /srv/a.raw")

        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = try #require(try JSONSerialization.jsonObject(with: encoder.encode(ListEntry(record: r, state: .running, job: job))) as? [String: Any])
        let j = try #require(json["job"] as? [String: Any])
        #expect(j["id"] as? String == "mirror-live" && j["type"] as? String == "mirror" && j["status"] as? String == "running")
        #expect(j["offset"] as? Int == 450 << 20 && j["length"] as? Int == 1 << 30 && j["pid"] == nil)
        #expect(json["state"] as? String == "running" && json["image"] as? String == "/srv/a.raw")
        let none = try #require(try JSONSerialization.jsonObject(with: encoder.encode(ListEntry(record: r, state: .running, job: nil))) as? [String: Any])
        #expect(none["job"] == nil)
    }

    /// The job file: written and read back for its server only, removed with nil.
    @Test func jobFileBelongsToItsServer() throws {
        let state = SwitchRecordTests.state()
        defer { try? FileManager.default.removeItem(atPath: state.path) }
        var r = SwitchRecordTests.record("/srv/a.raw", switched: nil)
        r.pid = 42
        let job = JobRecord(pid: 42, id: "m", type: "mirror", status: "ready", offset: 8, length: 8)
        state.writeJob(job, name: "live")
        #expect(state.job(of: r) == job)
        r.pid = 43  // another server took the disk over: the file is stale
        #expect(state.job(of: r) == nil)
        state.writeJob(nil, name: "live")
        #expect(access(state.jobPath("live"), F_OK) != 0)
    }
}
