/// QAPI `BlockExportOptions` for the export types QEMU knows, with the `vduse-blk` branch.
/// Values are as given (nil = absent); defaults are applied by the checks, as QEMU does.
public struct BlockExportOptions: Equatable, Sendable {
    /// QAPI `BlockExportIothreads`: a single iothread, or a set of them (multi-threading, QEMU
    /// commit 277fc1ce18 — even a one-element list means multi-threading).
    public enum Iothreads: Equatable, Sendable {
        case single(String)
        case multi([String])
    }

    /// `BlockExportType`. Only vduse-blk has a driver here.
    public static let types = ["nbd", "vhost-user-blk", "fuse", "vduse-blk"]

    public var type: String
    public var id: String
    public var nodeName: String
    public var writable: Bool?
    public var writethrough: Bool?
    public var iothread: Iothreads?
    public var fixedIothread: Bool?
    public var allowInactive: Bool?
    // vduse-blk members
    public var name: String
    public var numQueues: UInt16?
    public var queueSize: UInt16?
    public var logicalBlockSize: UInt64?
    public var serial: String?

    public init(type: String = "vduse-blk", id: String, nodeName: String, name: String) {
        self.type = type
        self.id = id
        self.nodeName = nodeName
        self.name = name
    }

    /// Reads the options in QAPI's member order (so the first bad member is reported first).
    public init(_ value: OptionValue, syntax: OptionSyntax) throws(OptionError) {
        var r = try OptionReader(value, syntax: syntax)
        guard let type = try r.enumeration("type", Self.types) else { throw OptionError("Parameter 'type' is missing") }
        self.type = type
        id = try r.requiredString("id")
        nodeName = try r.requiredString("node-name")
        writable = try r.bool("writable")
        writethrough = try r.bool("writethrough")
        switch r.raw("iothread") {
        case nil: iothread = nil
        case let .string(s)?: iothread = .single(s)
        case let .list(items)?:
            var names: [String] = []
            for (i, item) in items.enumerated() {
                guard case let .string(s) = item else {
                    throw OptionError("Invalid parameter type for 'iothread[\(i)]', expected: string")
                }
                names.append(s)
            }
            iothread = .multi(names)
        case .object(let members)? where syntax == .keyval && members.isEmpty:
            iothread = .multi([])
        default:
            throw OptionError("Invalid parameter type for 'iothread', expected: BlockExportIothreads")
        }
        fixedIothread = try r.bool("fixed-iothread")
        allowInactive = try r.bool("allow-inactive")
        guard type == "vduse-blk" else {
            // Other export types have members of their own that we do not model; their options
            // are not read further, and the checks stop at "No driver found".
            name = ""
            return
        }
        name = try r.requiredString("name")
        numQueues = try r.unsigned("num-queues", max: UInt64(UInt16.max), typeName: "uint16_t").map { UInt16($0) }
        queueSize = try r.unsigned("queue-size", max: UInt64(UInt16.max), typeName: "uint16_t").map { UInt16($0) }
        logicalBlockSize = try r.size("logical-block-size")
        serial = try r.string("serial")
        try r.finish()
    }
}

/// `--object iothread,id=ID` (the only object type an export can use).
public struct IOThreadObject: Equatable, Sendable {
    public var id: String

    public init(id: String) { self.id = id }

    public init(_ value: OptionValue, syntax: OptionSyntax) throws(OptionError) {
        var r = try OptionReader(value, syntax: syntax)
        guard let qomType = try r.string("qom-type") else { throw OptionError("Parameter 'qom-type' is missing") }
        guard qomType == "iothread" else { throw OptionError("Parameter 'qom-type' does not accept value '\(qomType)'") }
        id = try r.requiredString("id")
        guard ExportChecks.isWellFormedID(id) else { throw OptionError("Parameter 'id' expects an identifier") }
        // Polling knobs of QEMU's iothread object: accepted for compatibility, not used.
        for knob in ["poll-max-ns", "poll-grow", "poll-shrink", "aio-max-batch", "thread-pool-min", "thread-pool-max"] {
            _ = try r.unsigned(knob, max: UInt64(Int64.max), typeName: "int64_t")
        }
        try r.finish()
    }
}
