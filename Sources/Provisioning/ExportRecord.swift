import Kernel
import QAPI
import QMP
import Core
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

    public init(name: String, id: String, device: String, image: String, size: UInt64, queues: UInt16,
                serial: String, readOnly: Bool, pid: Int32, socket: String?, restarts: UInt32? = nil) {
        self.restarts = restarts
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

/// The state directory: one `NAME.json` per export (and `NAME.sock`, `NAME.log`).
public struct StateDirectory: Sendable {
    public let path: String

    /// `$VDUSE_EXPORT_STATE_DIR` or `/run/vduse-export`.
    public static var standard: StateDirectory {
        StateDirectory(path: ProcessInfo.processInfo.environment["VDUSE_EXPORT_STATE_DIR"] ?? "/run/vduse-export")
    }

    public init(path: String) { self.path = path }

    public func recordPath(_ name: String) -> String { "\(path)/\(name).json" }
    public func socketPath(_ name: String) -> String { "\(path)/\(name).sock" }
    public func logPath(_ name: String) -> String { "\(path)/\(name).log" }

    /// Creates the directory (0700) if needed.
    public func prepare() throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw ExportError("cannot create state directory \(path): \(String(cString: strerror(errno)))")
        }
        chmod(path, 0o700)
    }

    /// Writes `record` atomically (temporary file + rename), mode 0600.
    public func write(_ record: ExportRecord) throws {
        try prepare()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(record)
        let tmp = recordPath(record.name) + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ExportError("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let ok = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == data.count
        close(fd)
        guard ok, rename(tmp, recordPath(record.name)) == 0 else {
            unlink(tmp)
            throw ExportError("cannot write \(recordPath(record.name))")
        }
    }

    public func read(_ name: String) -> ExportRecord? {
        guard let data = FileManager.default.contents(atPath: recordPath(name)) else { return nil }
        return try? JSONDecoder().decode(ExportRecord.self, from: data)
    }

    /// Removes the record, socket and log of `name`.
    public func remove(_ name: String) {
        unlink(recordPath(name))
        unlink(socketPath(name))
    }

    /// Every record, sorted by name.
    public func all() -> [ExportRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted()
            .compactMap { read(String($0.dropLast(5))) }
    }

    /// The process exists and is a vduse-export (not a recycled pid).
    public static func processAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let argv0 = cmdline.split(separator: 0).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        // A zombie has an empty cmdline: it is gone for our purposes.
        return argv0.hasSuffix("vduse-export")
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
}
