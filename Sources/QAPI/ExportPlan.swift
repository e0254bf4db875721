/// What the option checks hand to the server: one export that passed every create-time check,
/// with all defaults applied and its block node resolved down to a backend.
///
/// This is the only type the data path needs from the option layer, so the checks (pure, testable
/// anywhere) and the device (needs the kernel) meet here and nowhere else.
public struct ExportPlan: Sendable, Equatable, Encodable {
    /// QEMU export id (`id=`).
    public var id: String
    /// VDUSE device name (`name=`): `/dev/vduse/NAME` and the vdpa device name.
    public var deviceName: String
    /// The block node exported (`node-name=`), as query-block-exports and block_resize name it.
    public var nodeName: String
    public var backend: BackendSpec
    /// The export accepts writes (`writable=on`).
    public var writable: Bool
    /// Every write reaches stable storage before it completes (`writethrough=on`).
    public var writethrough: Bool
    /// Name of the iothread serving every queue of this export; nil = the main loop.
    public var iothread: String?
    public var numQueues: UInt16
    public var queueSize: UInt16
    /// Bytes; a power of two in 512...2 MiB.
    public var logicalBlockSize: UInt32
    /// Returned by VIRTIO_BLK_T_GET_ID (first 20 bytes).
    public var serial: String

    public init(
        id: String, deviceName: String, nodeName: String = "", backend: BackendSpec, writable: Bool = false,
        writethrough: Bool = false, iothread: String? = nil, numQueues: UInt16 = 1,
        queueSize: UInt16 = 256, logicalBlockSize: UInt32 = 512, serial: String = ""
    ) {
        self.id = id
        self.deviceName = deviceName
        self.nodeName = nodeName
        self.backend = backend
        self.writable = writable
        self.writethrough = writethrough
        self.iothread = iothread
        self.numQueues = numQueues
        self.queueSize = queueSize
        self.logicalBlockSize = logicalBlockSize
        self.serial = serial
    }
}

/// The storage behind an export, after resolving `raw` → `file`/`host_device` node chains.
public struct BackendSpec: Sendable, Equatable, Encodable {
    public enum Kind: Sendable, Equatable {
        /// A regular file or a block device at this path.
        case file(path: String)
        /// QEMU's `null-co`: reads return zeros (`read-zeroes`) and writes are dropped. For benchmarks.
        case null(size: UInt64)
        /// A qcow2 image file, served by our qcow2 engine.
        case qcow2(Qcow2Spec)
        /// An NBD server's export, through libnbd.
        case nbd(NBDSpec)
        /// A Ceph RBD image (or snapshot), through librbd.
        case rbd(RBDSpec)
    }
    public var kind: Kind
    /// The node is read-only (`read-only=on` on any node of the chain).
    public var readOnly: Bool
    /// `cache.direct=on`: open with O_DIRECT.
    public var direct: Bool
    /// `force-share=on`: share the image with writers (QEMU's image locks; read-only only).
    public var forceShare: Bool

    public init(kind: Kind, readOnly: Bool = false, direct: Bool = false, forceShare: Bool = false) {
        self.kind = kind
        self.readOnly = readOnly
        self.direct = direct
        self.forceShare = forceShare
    }
}

/// A qcow2 node: the image file and how to treat its backing chain.
public struct Qcow2Spec: Sendable, Equatable {
    public enum Backing: Sendable, Equatable {
        /// The backing file the image names (opened read-only).
        case fromImage
        /// None: unallocated clusters read as zeros.
        case none
        /// Another node's image instead (`backing=NODE`).
        case image(path: String, qcow2: Bool)
    }
    public var path: String
    public var backing: Backing
    /// `l2-cache-size` in bytes; nil = the engine's default.
    public var l2CacheSize: UInt64?
    /// `discard=unmap`: guest discards free clusters; otherwise they are ignored, as in QEMU.
    public var discardUnmap: Bool

    public init(path: String, backing: Backing = .fromImage, l2CacheSize: UInt64? = nil, discardUnmap: Bool = false) {
        self.path = path
        self.backing = backing
        self.l2CacheSize = l2CacheSize
        self.discardUnmap = discardUnmap
    }
}

/// An NBD export: where the server listens, which export, and how long requests wait for a
/// lost connection to come back.
public struct NBDSpec: Sendable, Equatable {
    public enum Server: Sendable, Equatable {
        case inet(host: String, port: String)
        case unix(path: String)
    }
    public var server: Server
    /// "" = the server's default export.
    public var export: String
    /// Seconds (QEMU's `reconnect-delay`). Our default is not QEMU's 0: a kernel disk whose
    /// server restarts should not see I/O errors at once.
    public var reconnectDelay: UInt32
    public static let defaultReconnectDelay: UInt32 = 30
    /// Seconds (ours, `x-request-timeout`; QEMU has none): with requests outstanding, a server
    /// silent this long counts as lost (dropped, reconnected, requests resent); 0 = wait forever.
    public var requestTimeout: UInt32
    public static let defaultRequestTimeout: UInt32 = 30

    public init(server: Server, export: String = "", reconnectDelay: UInt32 = NBDSpec.defaultReconnectDelay,
                requestTimeout: UInt32 = NBDSpec.defaultRequestTimeout) {
        self.server = server
        self.export = export
        self.reconnectDelay = reconnectDelay
        self.requestTimeout = requestTimeout
    }

    /// The address as QEMU's messages name it: `HOST:PORT` or the socket path.
    public var address: String {
        switch server {
        case let .inet(host, port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(path): path
        }
    }

    /// As qemu-img and libnbd write it: `nbd://HOST:PORT/EXPORT` or `nbd+unix:///EXPORT?socket=PATH`.
    public var uri: String {
        switch server {
        case let .inet(host, port):
            let h = host.contains(":") ? "[\(host)]" : host
            return "nbd://\(h)\(port == "10809" ? "" : ":" + port)/\(export)"
        case let .unix(path):
            return "nbd+unix:///\(export)?socket=\(path)"
        }
    }
}

/// A Ceph RBD image: where it is and how to reach the cluster. Never a key: that stays in the
/// keyring ceph.conf names.
public struct RBDSpec: Sendable, Equatable {
    public var pool: String
    public var namespace: String
    public var image: String
    public var snapshot: String?
    /// ceph.conf path; nil = ceph's default search.
    public var conf: String?
    /// The client's id (`admin` for client.admin); nil = ceph's default.
    public var user: String?

    public init(pool: String, namespace: String = "", image: String, snapshot: String? = nil, conf: String? = nil,
                user: String? = nil) {
        self.pool = pool
        self.namespace = namespace
        self.image = image
        self.snapshot = snapshot
        self.conf = conf
        self.user = user
    }

    /// As qemu-img writes it: `rbd:POOL/[NAMESPACE/]IMAGE[@SNAP][:conf=PATH][:id=USER]`.
    public var uri: String {
        var s = "rbd:\(pool)/" + (namespace.isEmpty ? "" : namespace + "/") + image
        if let snapshot { s += "@" + snapshot }
        if let conf { s += ":conf=" + conf }
        if let user { s += ":id=" + user }
        return s
    }
}

/// Everything `serve` needs: the iothread objects to start, and the exports in command-line order.
public struct ServePlan: Sendable, Equatable, Encodable {
    public var iothreads: [String]
    public var exports: [ExportPlan]

    public init(iothreads: [String], exports: [ExportPlan]) {
        self.iothreads = iothreads
        self.exports = exports
    }
}

// MARK: JSON in QAPI's vocabulary (what `check` prints): every member with its default applied.

private struct QAPIKey: CodingKey {
    package var stringValue: String
    package var intValue: Int? { nil }
    package init(_ s: String) { stringValue = s }
    package init?(stringValue: String) { self.stringValue = stringValue }
    package init?(intValue: Int) { nil }
}

extension ExportPlan {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: QAPIKey.self)
        try c.encode("vduse-blk", forKey: QAPIKey("type"))
        try c.encode(id, forKey: QAPIKey("id"))
        try c.encode(nodeName, forKey: QAPIKey("node-name"))
        try c.encode(deviceName, forKey: QAPIKey("name"))
        try c.encode(writable, forKey: QAPIKey("writable"))
        try c.encode(writethrough, forKey: QAPIKey("writethrough"))
        try c.encode(iothread, forKey: QAPIKey("iothread"))
        try c.encode(numQueues, forKey: QAPIKey("num-queues"))
        try c.encode(queueSize, forKey: QAPIKey("queue-size"))
        try c.encode(logicalBlockSize, forKey: QAPIKey("logical-block-size"))
        try c.encode(serial, forKey: QAPIKey("serial"))
        try c.encode(backend, forKey: QAPIKey("backend"))
    }
}

extension BackendSpec {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: QAPIKey.self)
        switch kind {
        case let .file(path):
            try c.encode("file", forKey: QAPIKey("driver"))
            try c.encode(path, forKey: QAPIKey("filename"))
        case let .null(size):
            try c.encode("null-co", forKey: QAPIKey("driver"))
            try c.encode(size, forKey: QAPIKey("size"))
        case let .qcow2(q):
            try c.encode("qcow2", forKey: QAPIKey("driver"))
            try c.encode(q.path, forKey: QAPIKey("filename"))
            switch q.backing {
            case .fromImage: break
            case .none: try c.encodeNil(forKey: QAPIKey("backing"))
            case let .image(path, _): try c.encode(path, forKey: QAPIKey("backing"))
            }
            try c.encode(q.l2CacheSize, forKey: QAPIKey("l2-cache-size"))
            try c.encode(q.discardUnmap ? "unmap" : "ignore", forKey: QAPIKey("discard"))
        case let .nbd(n):
            try c.encode("nbd", forKey: QAPIKey("driver"))
            switch n.server {
            case let .inet(host, port): try c.encode(["type": "inet", "host": host, "port": port], forKey: QAPIKey("server"))
            case let .unix(path): try c.encode(["type": "unix", "path": path], forKey: QAPIKey("server"))
            }
            try c.encode(n.export, forKey: QAPIKey("export"))
            try c.encode(n.reconnectDelay, forKey: QAPIKey("reconnect-delay"))
            try c.encode(n.requestTimeout, forKey: QAPIKey("x-request-timeout"))
        case let .rbd(r):
            try c.encode("rbd", forKey: QAPIKey("driver"))
            try c.encode(r.pool, forKey: QAPIKey("pool"))
            try c.encode(r.namespace, forKey: QAPIKey("namespace"))
            try c.encode(r.image, forKey: QAPIKey("image"))
            try c.encode(r.snapshot, forKey: QAPIKey("snapshot"))
            try c.encode(r.conf, forKey: QAPIKey("conf"))
            try c.encode(r.user, forKey: QAPIKey("user"))
        }
        try c.encode(readOnly, forKey: QAPIKey("read-only"))
        try c.encode(direct, forKey: QAPIKey("cache.direct"))
        try c.encode(forceShare, forKey: QAPIKey("force-share"))
    }
}

extension BackendSpec {
    /// Served over the network (a URI, not a path).
    public var isNetwork: Bool {
        switch kind {
        case .nbd, .rbd: true
        default: false
        }
    }

    /// The image path, or the driver's name for backends without one.
    public var pathDescription: String {
        switch kind {
        case let .file(path): path
        case .null: "null-co"
        case let .qcow2(q): q.path
        case let .nbd(n): n.uri
        case let .rbd(r): r.uri
        }
    }
}

/// Where the reconnect log of a VDUSE device lives: `/run/vduse-export/NAME.inflight`, or a hashed
/// name for names too long to carry the suffix within NAME_MAX.
public enum ReconnectLogFile {
    public static let directory = "/run/vduse-export"

    public static func name(for device: String) -> String {
        device.utf8.count > 200 ? "~" + String(fnv1a(device), radix: 16) + ".inflight" : device + ".inflight"
    }

    /// FNV-1a: short, stable names and fingerprints for strings.
    public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    public static func path(for device: String, in directory: String = directory) -> String {
        directory + "/" + name(for: device)
    }
}
