import Errors
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
    /// What opening a node's file finds.
    public enum OpenResult: Sendable {
        case regularFile
        /// A block or character device.
        case device
        case other
        /// QEMU's reason text (the errno's).
        case failed(String)
    }

    /// Opens a file as a node wants it (writable or not) and says what it is.
    private let openProbe: @Sendable (_ path: String, _ writable: Bool) -> OpenResult

    public init(context: CheckContext = CheckContext(),
                openProbe: @escaping @Sendable (String, Bool) -> OpenResult = ServeConfiguration.probeOpen) {
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
        try addObject(v, syntax: s)
    }

    /// An iothread object from its parsed options (QMP `object-add` takes them as JSON).
    @discardableResult
    public mutating func addObject(_ v: OptionValue, syntax s: OptionSyntax) throws(OptionError) -> String {
        let t = try IOThreadObject(v, syntax: s)
        guard !context.iothreads.contains(t.id) else {
            throw OptionError("attempt to add duplicate property '\(t.id)' to object (type 'container')")
        }
        context.iothreads.insert(t.id)
        iothreads.append(t.id)
        return t.id
    }

    /// QMP `object-del`: an iothread no export uses (QEMU's words for the refusals).
    public mutating func removeObject(id: String) throws(OptionError) {
        guard context.iothreads.contains(id) else { throw OptionError("object '\(id)' not found") }
        if exports.contains(where: { $0.iothread == id }) { throw OptionError("object '\(id)' is in use, can not be deleted") }
        context.iothreads.remove(id)
        iothreads.removeAll { $0 == id }
    }

    /// `--blockdev …`: opens (probes) the node like QEMU's blockdev-add does, with its texts:
    /// a raw node finds its child first; a protocol node checks its name, then opens the file.
    public mutating func addBlockdev(_ spec: String) throws(OptionError) {
        let (v, s) = try Self.parseSpec(spec, impliedKey: "driver")
        try addBlockdev(BlockNodeOptions(v, syntax: s))
    }

    /// A node from its parsed options (QMP `blockdev-add` takes them as JSON).
    public mutating func addBlockdev(_ n: BlockNodeOptions) throws(OptionError) {
        let readOnly = n.readOnly ?? false
        let backend: BackendSpec
        switch n.driver {
        case .file, .hostDevice:
            try checkNodeName(n.nodeName)
            let path = n.filename!
            switch openProbe(path, !readOnly) {
            case let .failed(reason):
                throw OptionError("Could not open '\(path)': \(reason)")
            case .regularFile where n.driver == .hostDevice, .other where n.driver == .hostDevice:
                throw OptionError("'host_device' driver requires '\(path)' to be either a character or block device")
            case .device where n.driver == .file, .other where n.driver == .file:
                throw OptionError("'file' driver requires '\(path)' to be a regular file")
            default:
                break
            }
            let direct = n.cacheDirect ?? false
            if n.aio == "native" && !direct {
                throw OptionError("aio=native was specified, but it requires cache.direct=on, which was not specified.")
            }
            backend = BackendSpec(kind: .file(path: path), readOnly: readOnly, direct: direct,
                                  forceShare: n.forceShare ?? false)
        case .raw:
            guard var below = context.nodes[n.file!] else {
                throw OptionError("Cannot find device='\(n.file!)' nor node-name='\(n.file!)'")
            }
            try checkNodeName(n.nodeName)
            below.readOnly = below.readOnly || readOnly   // read-only anywhere in the chain
            if let direct = n.cacheDirect { below.direct = direct }
            below.forceShare = below.forceShare || n.forceShare == true
            backend = below
        case .qcow2:
            backend = try qcow2Node(n, readOnly: readOnly)
        case .nbd:
            try checkNodeName(n.nodeName)
            // The server is reached when the export opens it: `check` does not connect.
            let spec = NBDSpec(server: n.nbdServer!, export: n.nbdExport ?? "",
                               reconnectDelay: n.reconnectDelay ?? NBDSpec.defaultReconnectDelay,
                               requestTimeout: n.requestTimeout ?? NBDSpec.defaultRequestTimeout)
            backend = BackendSpec(kind: .nbd(spec), readOnly: readOnly)
        case .rbd:
            try checkNodeName(n.nodeName)
            let spec = n.rbd!
            // QEMU's words; the cluster is contacted when the export opens the image.
            if spec.snapshot != nil && !readOnly { throw OptionError("rbd snapshots are always read-only") }
            backend = BackendSpec(kind: .rbd(spec), readOnly: readOnly)
        case .nullCo:
            try checkNodeName(n.nodeName)
            backend = BackendSpec(kind: .null(size: n.size ?? 1 << 30), readOnly: readOnly)
        }
        context.nodes[n.nodeName] = backend
        context.nodesMarkedReadOnly[n.nodeName] = readOnly
        nodeNames.append(n.nodeName)
        nodes[n.nodeName] = n
    }

    /// The options each node was added with (for `query-named-block-nodes`).
    public private(set) var nodes: [String: BlockNodeOptions] = [:]

    /// The nodes a node is built on (`file`, a named `backing`).
    public func children(of name: String) -> [String] {
        guard let n = nodes[name] else { return [] }
        return [n.file, n.backing].compactMap { $0 }.filter { !$0.isEmpty }
    }

    /// QMP `blockdev-del`: a node that no export and no other node uses (QEMU's words).
    public mutating func removeBlockdev(nodeName: String) throws(OptionError) {
        guard nodes[nodeName] != nil else { throw OptionError("Failed to find node with node-name='\(nodeName)'") }
        if exports.contains(where: { $0.nodeName == nodeName }) { throw OptionError("Node \(nodeName) is in use") }
        if nodeNames.contains(where: { children(of: $0).contains(nodeName) }) {
            throw OptionError("Block device \(nodeName) is in use")
        }
        context.nodes[nodeName] = nil
        context.nodesMarkedReadOnly[nodeName] = nil
        nodeNames.removeAll { $0 == nodeName }
        nodes[nodeName] = nil
    }

    /// A qcow2 node over a file node; `backing` names a raw/file or qcow2 node, or none.
    private func qcow2Node(_ n: BlockNodeOptions, readOnly: Bool) throws(OptionError) -> BackendSpec {
        guard let below = context.nodes[n.file!] else {
            throw OptionError("Cannot find device='\(n.file!)' nor node-name='\(n.file!)'")
        }
        guard case let .file(path) = below.kind else {
            throw OptionError("qcow2 node '\(n.nodeName)': 'file' must name a file node holding the image")
        }
        var backing = Qcow2Spec.Backing.fromImage
        switch n.backing {
        case nil: break
        case ""?: backing = .none
        case let name?:
            guard let b = context.nodes[name] else {
                throw OptionError("Cannot find device='\(name)' nor node-name='\(name)'")
            }
            switch b.kind {
            case let .file(p): backing = .image(path: p, qcow2: false)
            case let .qcow2(q): backing = .image(path: q.path, qcow2: true)
            case .null, .nbd, .rbd: throw OptionError("qcow2 node '\(n.nodeName)': backing node '\(name)' must be a raw or qcow2 image")
            }
        }
        if below.direct || n.cacheDirect == true {
            throw OptionError("qcow2 node '\(n.nodeName)': cache.direct=on is not supported with qcow2")
        }
        try checkNodeName(n.nodeName)
        let spec = Qcow2Spec(path: path, backing: backing, l2CacheSize: n.l2CacheSize, discardUnmap: n.discardUnmap ?? false)
        return BackendSpec(kind: .qcow2(spec), readOnly: below.readOnly || readOnly)
    }

    private func checkNodeName(_ name: String) throws(OptionError) {
        guard ExportChecks.isWellFormedID(name) else { throw OptionError("Invalid node-name: '\(name)'") }
        guard context.nodes[name] == nil else { throw OptionError("Duplicate nodes with node-name='\(name)'") }
        // QEMU's node names fit in char[32], terminator included.
        guard name.utf8.count < 32 else { throw OptionError("Node name too long") }
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

    /// The real probe: opens the path with the wanted access and looks at its type.
    public static let probeOpen: @Sendable (String, Bool) -> OpenResult = { path, writable in
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below anyway).
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return .failed(SystemError("open", errno: errno).reason) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failed(SystemError("fstat", errno: errno).reason) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .regularFile
        case S_IFBLK, S_IFCHR: return .device
        default: return .other
        }
    }
}
