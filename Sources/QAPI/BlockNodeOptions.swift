/// `--blockdev`: the block nodes an export can serve. Supported drivers: `file` and
/// `host_device` (protocol nodes: an image file or a block device), `raw` (a format node over
/// another node, given by name in `file`), `qcow2` (a format node over a `file` node, with an
/// optional `backing` node), `nbd` (an NBD server's export) and `null-co` (zeros, for benchmarks).
public struct BlockNodeOptions: Equatable, Sendable {
    /// The block drivers we implement, by their QEMU names.
    public enum Driver: String, CaseIterable, Equatable, Sendable {
        case file
        case hostDevice = "host_device"
        case raw
        case qcow2
        case nullCo = "null-co"
        case nbd
        case rbd
    }
    public static let drivers = Driver.allCases.map(\.rawValue)
    /// Other QEMU block drivers: known names, refused with a clear message.
    package static let unsupportedQEMUDrivers = [
        "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "luks", "parallels", "bochs", "cloop", "dmg",
        "iscsi", "nvme", "nfs", "ssh", "http", "https", "gluster", "host_cdrom", "null-aio",
        "blkdebug", "blkverify", "blklogwrites", "copy-on-read", "throttle", "quorum", "replication",
        "compress", "copy-before-write", "snapshot-access", "preallocate", "io_uring", "vvfat", "virtio-blk-vhost-user",
    ]

    public var driver: Driver
    public var nodeName: String
    public var readOnly: Bool?
    public var cacheDirect: Bool?
    /// `force-share=on`: take no lock that keeps other writers out (read-only nodes only).
    public var forceShare: Bool?
    /// file / host_device
    public var filename: String?
    /// file / host_device: threads, native or io_uring (accepted; we always use io_uring)
    public var aio: String?
    /// raw, qcow2: the node below
    public var file: String?
    /// qcow2: the backing node's name; nil = the image's own backing file; "" = none
    /// (QEMU's `backing: null`, written `backing=` in keyval syntax).
    public var backing: String?
    /// qcow2: bytes of L2 tables to cache
    public var l2CacheSize: UInt64?
    /// qcow2: `discard=unmap` passes guest discards to the image (QEMU's default: ignore)
    public var discardUnmap: Bool?
    /// nbd: `server.*` (QEMU's SocketAddress, types inet and unix), `export`, `reconnect-delay`,
    /// and ours, `x-request-timeout`
    public var nbdServer: NBDSpec.Server?
    public var nbdExport: String?
    public var reconnectDelay: UInt32?
    public var requestTimeout: UInt32?
    /// rbd: `pool`, `namespace`, `image`, `snapshot`, `conf`, `user`
    public var rbd: RBDSpec?
    /// null-co
    public var size: UInt64?
    public var readZeroes: Bool?

    public init(_ value: OptionValue, syntax: OptionSyntax) throws(OptionError) {
        var r = try OptionReader(value, syntax: syntax)
        guard let driver = try r.string("driver") else { throw OptionError("Parameter 'driver' is missing") }
        guard let known = Driver(rawValue: driver) else {
            if Self.unsupportedQEMUDrivers.contains(driver) {
                throw OptionError("Block driver '\(driver)' is not supported by vduse-export (use file, host_device, raw, qcow2, nbd, rbd or null-co)")
            }
            throw OptionError("Parameter 'driver' does not accept value '\(driver)'")
        }
        self.driver = known
        guard let nodeName = try r.string("node-name") else { throw OptionError("'node-name' must be specified for the root node") }
        self.nodeName = nodeName
        readOnly = try r.bool("read-only")
        forceShare = try r.bool("force-share")
        if forceShare == true && readOnly != true {
            throw OptionError("force-share=on can only be used with read-only images")
        }
        if let cache = r.raw("cache") {
            var c = try OptionReader(cache, syntax: syntax, prefix: "cache.")
            cacheDirect = try c.bool("direct")
            try c.finish()
        }
        // QEMU block options we do not implement (discard, detect-zeroes, cache.no-flush, …) are
        // refused as unexpected rather than silently ignored.
        switch self.driver {
        case .file, .hostDevice:
            filename = try r.requiredString("filename")
            aio = try r.enumeration("aio", ["threads", "native", "io_uring"])
        case .raw, .qcow2:
            switch r.raw("file") {
            case let .string(s)?: file = s
            case nil: throw OptionError("Parameter 'file' is missing")
            default: throw OptionError("Invalid parameter type for 'file', expected: string (the node-name of a --blockdev given before)")
            }
            guard known == .qcow2 else { break }
            switch r.raw("backing") {
            case let .string(s)?: backing = s
            case .null?: backing = ""
            case nil: backing = nil
            default: throw OptionError("Invalid parameter type for 'backing', expected: string or null")
            }
            l2CacheSize = try r.size("l2-cache-size")
            discardUnmap = try r.enumeration("discard", ["ignore", "off", "unmap", "on"]).map { $0 == "unmap" || $0 == "on" }
        case .nbd:
            guard let server = r.raw("server") else { throw OptionError("NBD server address missing") }
            var a = try OptionReader(server, syntax: syntax, prefix: "server.")
            switch try a.enumeration("type", ["inet", "unix"]) {
            case "inet"?: nbdServer = .inet(host: try a.requiredString("host"), port: try a.requiredString("port"))
            case "unix"?: nbdServer = .unix(path: try a.requiredString("path"))
            default: throw OptionError("Parameter 'server.type' is missing")
            }
            try a.finish()
            nbdExport = try r.string("export")
            reconnectDelay = try r.unsigned("reconnect-delay", max: UInt64(UInt32.max), typeName: "uint32_t").map { UInt32($0) }
            requestTimeout = try r.unsigned("x-request-timeout", max: UInt64(UInt32.max), typeName: "uint32_t").map { UInt32($0) }
        case .rbd:
            let pool = try r.requiredString("pool")
            let image = try r.requiredString("image")
            rbd = RBDSpec(pool: pool, namespace: try r.string("namespace") ?? "", image: image,
                          snapshot: try r.string("snapshot"), conf: try r.string("conf"), user: try r.string("user"))
        case .nullCo:
            // QAPI `int`, not `size`: no suffixes (size=1G fails in QEMU too).
            size = try r.unsigned("size", max: UInt64(Int64.max), typeName: "int64_t")
            readZeroes = try r.bool("read-zeroes")
        }
        try r.finish()
    }
}
