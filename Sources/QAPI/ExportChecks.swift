import Glibc

/// What the create-time checks need to know about the server around the export. The probes
/// default to the real host; tests pass their own, so the checks stay pure.
public struct CheckContext: Sendable {
    /// Block nodes by node-name, resolved down to their backend (whose `readOnly` says whether
    /// any node of the chain is read-only).
    public var nodes: [String: BackendSpec] = [:]
    /// The nodes' own `read-only` option.
    public var nodesMarkedReadOnly: [String: Bool] = [:]
    public var iothreads: Set<String> = []
    /// Ids of live exports (and earlier ones on the same command line).
    public var exportIDs: Set<String> = []
    /// VDUSE names taken by earlier exports of this server.
    public var deviceNames: Set<String> = []
    /// Whether /dev/vduse/NAME exists (held by some server, or orphaned).
    /// A device that exists is in use unless a reconnect log says it was ours and no process
    /// holds it now (the kernel lets one process open it: EBUSY means a live server has it);
    /// then the server takes it over (and refuses it if it was made for another configuration).
    public var deviceNameInUse: @Sendable (String) -> Bool = { name in
        guard access("/dev/vduse/\(name)", F_OK) == 0 else { return false }
        guard access(ReconnectLogFile.path(for: name), F_OK) == 0 else { return true }
        let fd = open("/dev/vduse/\(name)", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { return errno == EBUSY }
        close(fd)
        return false
    }

    public init() {}
}

/// QEMU's create-time checks for a block export (`blk_exp_add`) and the vduse-blk driver
/// (`vduse_blk_exp_create`), in QEMU's order and with its messages (QEMU with the
/// multi-threading interface of commit 277fc1ce18). Nothing here touches the kernel.
public enum ExportChecks {
    public static let maxQueueSize: UInt16 = 1024
    public static let minBlockSize: UInt64 = 512
    public static let maxBlockSize: UInt64 = 2 * 1024 * 1024
    /// VDUSE_NAME_MAX counts the terminating NUL.
    public static let vduseNameMax = 256

    /// QEMU's id_wellformed: an ASCII letter, then letters, digits, '-', '.', '_'.
    public static func isWellFormedID(_ id: String) -> Bool { Identifier.isWellFormed(id) }

    /// Runs every check; returns the export with QEMU's defaults applied.
    public static func check(_ o: BlockExportOptions, in context: CheckContext) throws(OptionError) -> ExportPlan {
        // blk_exp_add
        if o.fixedIothread == true, case .multi = o.iothread {
            throw OptionError("Cannot use fixed-iothread for a multi-threaded export")
        }
        guard isWellFormedID(o.id) else { throw OptionError("Invalid block export id") }
        guard !context.exportIDs.contains(o.id) else { throw OptionError("Block export id '\(o.id)' is already in use") }
        guard o.type == "vduse-blk" else { throw OptionError("No driver found for the requested export type") }
        guard let backend = context.nodes[o.nodeName] else {
            throw OptionError("Cannot find device='' nor node-name='\(o.nodeName)'")
        }
        let writable = o.writable ?? false
        if writable && context.nodesMarkedReadOnly[o.nodeName] ?? backend.readOnly {
            throw OptionError("Cannot export read-only node as writable")
        }
        var iothread: String?
        switch o.iothread {
        case nil:
            break
        case let .single(name):
            guard context.iothreads.contains(name) else { throw OptionError("iothread \"\(name)\" not found") }
            // QEMU then moves the node into the iothread; our nodes have no AioContext of their
            // own, so the move always succeeds and fixed-iothread has nothing to refuse.
            iothread = name
        case let .multi(names):
            guard !names.isEmpty else { throw OptionError("The set of I/O threads must not be empty") }
            for name in names where !context.iothreads.contains(name) {
                throw OptionError("iothread \"\(name)\" not found")
            }
        }
        // Our nodes are always active (we have no migration), and vduse-blk does not support
        // inactive nodes: QEMU refuses allow-inactive for it with this message.
        if o.allowInactive == true { throw OptionError("Export type does not support inactive exports") }
        // QEMU's permission step: the export takes WRITE on the node, which a read-only node
        // further down the chain refuses (the text qemu-storage-daemon prints).
        if writable && backend.readOnly { throw OptionError("Block node is read-only") }

        // vduse_blk_exp_create
        if let n = o.numQueues, n == 0 { throw OptionError("num-queues must be greater than 0") }
        if let q = o.queueSize, q <= 2 || q & (q - 1) != 0 || q > maxQueueSize {
            throw OptionError("queue-size is invalid")
        }
        // QEMU's check_block_size treats 0 as "not set" and accepts it; so do we, and then use
        // the default 512 (QEMU would pass 0 on and divide by it on the first request).
        if let b = o.logicalBlockSize, b != 0, b < minBlockSize || b > maxBlockSize || b & (b - 1) != 0 {
            throw OptionError("parameter logical-block-size must be a power of 2 between \(minBlockSize) and \(maxBlockSize)")
        }
        if case .multi = o.iothread { throw OptionError("vduse-blk export does not support multi-threading") }
        try checkDeviceName(o.name, in: context)

        var lbs = o.logicalBlockSize ?? 512
        if lbs == 0 { lbs = 512 }
        return ExportPlan(
            id: o.id, deviceName: o.name, nodeName: o.nodeName, backend: backend, writable: writable,
            writethrough: o.writethrough ?? false, iothread: iothread, numQueues: o.numQueues ?? 1,
            queueSize: o.queueSize ?? 256, logicalBlockSize: UInt32(lbs), serial: o.serial ?? "")
    }

    /// The VDUSE device name: what libvduse checks before any ioctl, what the kernel refuses,
    /// names that sysfs and netlink would disagree on, and names already taken. QEMU reports
    /// all of these as `failed to create vduse device`; we add the reason after a colon.
    package static func checkDeviceName(_ name: String, in context: CheckContext) throws(OptionError) {
        func fail(_ reason: String) -> OptionError { OptionError("failed to create vduse device: \(reason)") }
        guard !name.isEmpty else { throw fail("name is empty") }
        guard name.utf8.count < vduseNameMax else { throw fail("name is longer than \(vduseNameMax - 1) bytes") }
        guard !name.contains("..") else { throw fail("name contains '..'") }
        guard Identifier.hasOnlyNameCharacters(name), name != "control", name != "." else {
            throw fail("name '\(name)' may only contain letters, digits, '.', '_' and '-' (and is not 'control')")
        }
        guard !context.deviceNames.contains(name), !context.deviceNameInUse(name) else {
            throw fail("name '\(name)' is already in use")
        }
    }
}
