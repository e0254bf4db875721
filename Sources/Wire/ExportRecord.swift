import Kernel
import Foundation
import Glibc

/// What the host knows about one export between commands: written by the server when the disk
/// is ready, read by `list`, `add` (idempotence) and `del`. One JSON file per VDUSE name under
/// the state directory (`/run/vduse-export`, mode 0700; files 0600).
public struct ExportRecord: Codable, Equatable, Sendable {
    public var name: String
    public var id: String
    public var device: String
    /// The image (or block device) path as given, resolved to an absolute path.
    public var image: String
    public var size: UInt64
    public var queues: UInt16
    public var serial: String
    public var readOnly: Bool
    public var pid: Int32
    /// The server's QMP control socket, if it has one.
    public var socket: String?
    /// Times a new server took the device over after its predecessor was gone (crash, upgrade).
    public var restarts: UInt32?
    /// The process that restarts the server (`add`'s supervisor), if any: `del` stops it first.
    public var supervisor: Int32?
    /// When the disk was first created (RFC 3339 in JSON); kept by servers that take it over.
    public var created: Timestamp?
    /// The version of vduse-export whose server wrote the record (it may differ from this
    /// binary's after an upgrade, until the server is restarted).
    public var version: String?
    /// `add --overlay`: the overlay it created (`image`), which `del` deletes unless `--keep`,
    /// and the base under it.
    public var overlay: String?
    public var base: String?
    /// Set once a live snapshot, commit or mirror moved the disk to another image: what the
    /// server's configuration names and what it serves instead. A server started again with
    /// that configuration (supervisor, `restart`) serves the image recorded here.
    public var switched: SwitchedImage?

    public init(name: String, id: String, device: String, image: String, size: UInt64, queues: UInt16,
                serial: String, readOnly: Bool, pid: Int32, socket: String?, restarts: UInt32? = nil,
                supervisor: Int32? = nil) {
        self.restarts = restarts
        self.supervisor = supervisor
        self.name = name
        self.id = id
        self.device = device
        self.image = image
        self.size = size
        self.queues = queues
        self.serial = serial
        self.readOnly = readOnly
        self.pid = pid
        self.socket = socket
    }

    /// Whether the recorded server process is alive (a dead one leaves a stale record).
    public var state: ExportState { StateDirectory.processAlive(pid) ? .running : .dead }
}

/// The image a running export was switched to, and the one its configuration names.
public struct SwitchedImage: Codable, Equatable, Sendable {
    public enum Driver: String, Codable, Sendable { case file, qcow2, nbd, rbd }
    /// The image the server's arguments name (the record's `image` before the first switch).
    public var origin: String
    /// A path, or a network image's URI (nbd, rbd).
    public var image: String
    public var driver: Driver

    public init(origin: String, image: String, driver: Driver) {
        self.origin = origin
        self.image = image
        self.driver = driver
    }
}

/// What the state directory holds for a name.
public enum RecordLookup: Equatable, Sendable {
    case missing
    /// A file that is not a record of this name (torn write, edited by hand): `del` still works.
    case damaged(path: String)
    case found(ExportRecord)
}

/// The state directory: one `NAME.json` per export (and `NAME.sock`, `NAME.log`). Names too long
/// for a file name or a socket address (`sun_path`) use `~HASH` instead of `NAME`; the record
/// inside still carries the name.
public struct StateDirectory: Sendable {
    public let path: String

    /// `$VDUSE_EXPORT_STATE_DIR` or `/run/vduse-export`.
    public static var standard: StateDirectory {
        StateDirectory(path: ProcessInfo.processInfo.environment["VDUSE_EXPORT_STATE_DIR"] ?? "/run/vduse-export")
    }

    public init(path: String) { self.path = path }

    /// Longest name kept as is in file names (NAME.json, NAME.log and the temporary file fit 255).
    static let longestPlainName = 200

    /// `~` and 16 hex digits of FNV-1a: `~` never occurs in a name, so no name collides with it.
    static func hashedStem(_ name: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return "~" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    func stem(_ name: String) -> String { name.utf8.count <= Self.longestPlainName ? name : Self.hashedStem(name) }

    public func recordPath(_ name: String) -> String { "\(path)/\(stem(name)).json" }
    public func logPath(_ name: String) -> String { "\(path)/\(stem(name)).log" }
    /// Fits `sun_path` (107 bytes and a NUL) whenever the directory path leaves room for a hash.
    public func socketPath(_ name: String) -> String {
        let plain = "\(path)/\(name).sock"
        return plain.utf8.count <= 107 ? plain : "\(path)/\(Self.hashedStem(name)).sock"
    }

    /// Creates the directory (0700) if needed.
    public func prepare() throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw ExportError("cannot create state directory \(path)", because: SystemError("mkdir", errno: errno))
        }
        chmod(path, 0o700)
    }

    /// Writes `record` atomically (temporary file + fsync + rename), mode 0600. Throws when any
    /// step fails (full /run, ...): a record that silently is not there makes an export
    /// unmanageable.
    public func write(_ record: ExportRecord) throws {
        try prepare()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(record)
        let final = recordPath(record.name)
        let tmp = "\(path)/.\(stem(record.name)).\(getpid()).tmp"
        do {
            try FileReplacement.replace(final, temporary: tmp, mode: 0o600, with: data)
        } catch {
            switch error {
            case let .create(e): throw ExportError("cannot write \(tmp)", because: e)
            case let .write(e): throw ExportError("cannot write the state record \(final)", because: e)
            }
        }
    }

    public func lookup(_ name: String) -> RecordLookup {
        let file = recordPath(name)
        guard let data = FileManager.default.contents(atPath: file) else {
            return access(file, F_OK) == 0 ? .damaged(path: file) : .missing
        }
        guard let record = try? JSONDecoder().decode(ExportRecord.self, from: data), record.name == name else {
            return .damaged(path: file)
        }
        return .found(record)
    }

    public func read(_ name: String) -> ExportRecord? {
        if case let .found(record) = lookup(name) { return record }
        return nil
    }

    /// Removes the record, socket and job file of `name`.
    public func remove(_ name: String) {
        unlink(recordPath(name))
        unlink(socketPath(name))
        unlink(jobPath(name))
    }

    /// Every readable record, sorted by name.
    public func all() -> [ExportRecord] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return files.filter { $0.hasSuffix(".json") }
            .compactMap { FileManager.default.contents(atPath: "\(path)/\($0)") }
            .compactMap { try? JSONDecoder().decode(ExportRecord.self, from: $0) }
            .filter { read($0.name) == $0 }
            .sorted { $0.name < $1.name }
    }

    /// The process exists and is a vduse-export (not a recycled pid).
    public static func processAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let argv0 = cmdline.split(separator: 0).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        // A zombie has an empty cmdline: it is gone for our purposes.
        return argv0.hasSuffix("vduse-export")
    }

    /// The vduse-export process that holds `/dev/vduse/NAME` open: the server of that name, found
    /// without its record.
    public static func serverHolding(vduseName name: String) -> Int32? {
        let target = "/dev/vduse/\(name)"
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != getpid(), processAlive(pid) else { continue }
            for fd in (try? fm.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            where (try? fm.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) == target {
                return pid
            }
        }
        return nil
    }
}

/// What `list` says of an export.
public enum ExportState: String, Codable, Sendable {
    /// Its server runs.
    case running
    /// Its record is left from a server that is gone.
    case dead
    /// A VDUSE device with no record of ours.
    case unmanaged
    /// A VDUSE device whose record cannot be read (`del` still removes it).
    case damaged
}

extension ExportRecord {
    /// This record with what the server does not know itself, from the previous record when
    /// this server took the same disk over (restarts > 0): the disk's creation time (else now),
    /// and the overlay `add` made (a restarted server reopens it, and `del` must still delete it).
    package func keepingCreation(from previous: ExportRecord?) -> ExportRecord {
        var r = self
        r.created = .now
        if (restarts ?? 0) > 0, let previous, previous.id == id, previous.image == image {
            r.created = previous.created ?? r.created
            r.overlay = previous.overlay
            r.base = previous.base
            r.switched = previous.switched
        }
        return r
    }
}
