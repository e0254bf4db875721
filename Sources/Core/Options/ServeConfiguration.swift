import Glibc

/// The server's objects, block nodes and exports, built from command-line specs (keyval or
/// JSON, as qemu-storage-daemon accepts them) and checked like QEMU does. Applied in this
/// order: every `--object`, then every `--blockdev`, then every `--export`; each group in
/// command-line order. Later exports (QMP) are checked against what exists by then.
public struct ServeConfiguration: Sendable {
    public private(set) var iothreads: [String] = []
    public private(set) var nodeNames: [String] = []
    public private(set) var exports: [ExportPlan] = []
    public private(set) var context: CheckContext
    /// Whether a file can be opened as a node wants it: nil, or QEMU's reason text.
    private let openProbe: @Sendable (_ path: String, _ writable: Bool) -> String?

    public init(context: CheckContext = CheckContext(),
                openProbe: @escaping @Sendable (String, Bool) -> String? = ServeConfiguration.probeOpen) {
        self.context = context
        self.openProbe = openProbe
    }

    public var plan: ServePlan { ServePlan(iothreads: iothreads, exports: exports) }

    /// Parses one option argument: JSON when it starts with `{`, keyval otherwise.
    public static func parseSpec(_ text: String, impliedKey: String?) throws(OptionError) -> (OptionValue, OptionSyntax) {
        if text.drop(while: { $0 == " " }).first == "{" { return (try JSONParser.parse(text), .json) }
        return (try KeyvalParser.parse(text, impliedKey: impliedKey), .keyval)
    }

    public static func build(objects: [String], blockdevs: [String], exports: [String],
                             into configuration: ServeConfiguration = ServeConfiguration()) throws(OptionError) -> ServeConfiguration {
        var c = configuration
        for o in objects { try c.addObject(o) }
        for b in blockdevs { try c.addBlockdev(b) }
        for e in exports {
            let (v, s) = try parseSpec(e, impliedKey: "type")
            try c.addExport(BlockExportOptions(v, syntax: s))
        }
        return c
    }

    /// `--object iothread,id=ID`
    public mutating func addObject(_ spec: String) throws(OptionError) {
        let (v, s) = try Self.parseSpec(spec, impliedKey: "qom-type")
        let t = try IOThreadObject(v, syntax: s)
        guard !context.iothreads.contains(t.id) else {
            throw OptionError("attempt to add duplicate property '\(t.id)' to object (type 'container')")
        }
        context.iothreads.insert(t.id)
        iothreads.append(t.id)
    }

    /// `--blockdev …`: opens (probes) the node like QEMU's blockdev-add does.
    public mutating func addBlockdev(_ spec: String) throws(OptionError) {
        let (v, s) = try Self.parseSpec(spec, impliedKey: "driver")
        let n = try BlockNodeOptions(v, syntax: s)
        guard context.nodes[n.nodeName] == nil else {
            throw OptionError("Duplicate nodes with node-name='\(n.nodeName)'")
        }
        let readOnly = n.readOnly ?? false
        let backend: BackendSpec
        switch n.driver {
        case "file", "host_device":
            let path = n.filename!
            if let reason = openProbe(path, !readOnly) { throw OptionError("Could not open '\(path)': \(reason)") }
            backend = BackendSpec(kind: .file(path: path), readOnly: readOnly, direct: n.cacheDirect ?? false)
        case "raw":
            guard var below = context.nodes[n.file!] else {
                throw OptionError("Cannot find device='' nor node-name='\(n.file!)'")
            }
            below.readOnly = below.readOnly || readOnly
            if let direct = n.cacheDirect { below.direct = direct }
            backend = below
        default:
            backend = BackendSpec(kind: .null(size: n.size ?? 1 << 30), readOnly: readOnly)
        }
        context.nodes[n.nodeName] = backend
        nodeNames.append(n.nodeName)
    }

    /// Checks one export against everything so far and records it.
    @discardableResult
    public mutating func addExport(_ options: BlockExportOptions) throws(OptionError) -> ExportPlan {
        let plan = try ExportChecks.check(options, in: context)
        context.exportIDs.insert(plan.id)
        context.deviceNames.insert(plan.deviceName)
        exports.append(plan)
        return plan
    }

    /// Forgets a deleted export: its id and name can be used again.
    public mutating func removeExport(id: String) {
        guard let i = exports.firstIndex(where: { $0.id == id }) else { return }
        context.exportIDs.remove(id)
        context.deviceNames.remove(exports[i].deviceName)
        exports.remove(at: i)
    }

    /// The real probe: the path exists and opens with the wanted access.
    public static let probeOpen: @Sendable (String, Bool) -> String? = { path, writable in
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        close(fd)
        return nil
    }
}
