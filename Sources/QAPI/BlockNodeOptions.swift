/// `--blockdev`: the block nodes an export can serve. Supported drivers: `file` and
/// `host_device` (protocol nodes: an image file or a block device), `raw` (a format node over
/// another node, given by name in `file`) and `null-co` (zeros, for benchmarks).
public struct BlockNodeOptions: Equatable, Sendable {
    public static let drivers = ["file", "host_device", "raw", "null-co"]
    /// Other QEMU block drivers: known names, refused with a clear message.
    package static let unsupportedQEMUDrivers = [
        "qcow2", "qcow", "qed", "vmdk", "vdi", "vhdx", "vpc", "luks", "parallels", "bochs", "cloop", "dmg",
        "nbd", "iscsi", "nvme", "nfs", "ssh", "http", "https", "rbd", "gluster", "host_cdrom", "null-aio",
        "blkdebug", "blkverify", "blklogwrites", "copy-on-read", "throttle", "quorum", "replication",
        "compress", "copy-before-write", "snapshot-access", "preallocate", "io_uring", "vvfat", "virtio-blk-vhost-user",
    ]

    public var driver: String
    public var nodeName: String
    public var readOnly: Bool?
    public var cacheDirect: Bool?
    /// file / host_device
    public var filename: String?
    /// file / host_device: threads, native or io_uring (accepted; we always use io_uring)
    public var aio: String?
    /// raw: the node below
    public var file: String?
    /// null-co
    public var size: UInt64?
    public var readZeroes: Bool?

    public init(_ value: OptionValue, syntax: OptionSyntax) throws(OptionError) {
        var r = try OptionReader(value, syntax: syntax)
        guard let driver = try r.string("driver") else { throw OptionError("Parameter 'driver' is missing") }
        guard Self.drivers.contains(driver) else {
            if Self.unsupportedQEMUDrivers.contains(driver) {
                throw OptionError("Block driver '\(driver)' is not supported by vduse-export (use file, host_device, raw or null-co)")
            }
            throw OptionError("Parameter 'driver' does not accept value '\(driver)'")
        }
        self.driver = driver
        guard let nodeName = try r.string("node-name") else { throw OptionError("'node-name' must be specified for the root node") }
        self.nodeName = nodeName
        readOnly = try r.bool("read-only")
        if let cache = r.raw("cache") {
            var c = try OptionReader(cache, syntax: syntax, prefix: "cache.")
            cacheDirect = try c.bool("direct")
            try c.finish()
        }
        // QEMU block options we do not implement (discard, detect-zeroes, cache.no-flush, …) are
        // refused as unexpected rather than silently ignored.
        switch driver {
        case "file", "host_device":
            filename = try r.requiredString("filename")
            aio = try r.enumeration("aio", ["threads", "native", "io_uring"])
        case "raw":
            switch r.raw("file") {
            case let .string(s)?: file = s
            case nil: throw OptionError("Parameter 'file' is missing")
            default: throw OptionError("Invalid parameter type for 'file', expected: string (the node-name of a --blockdev given before)")
            }
        default:  // null-co
            // QAPI `int`, not `size`: no suffixes (size=1G fails in QEMU too).
            size = try r.unsigned("size", max: UInt64(Int64.max), typeName: "int64_t")
            readZeroes = try r.bool("read-zeroes")
        }
        try r.finish()
    }
}
