import Kernel
import QAPI
import Core
import Foundation
import Glibc
import Logging
import Synchronization

/// The QMP commands a qemu-storage-daemon client uses, mapped onto the manager and the server's
/// configuration: exports (block-export-add/-del, query-block-exports, block_resize), nodes and
/// iothreads at run time (blockdev-add/-del, object-add/-del, query-named-block-nodes), the
/// counters (query-blockstats, x-query-export-stats), query-version, query-commands, quit.
package final class QMPCommands: Sendable {
    let manager: ExportManager
    let configuration: Mutex<ServeConfiguration>
    let records: any ExportObserver
    private let logger: Logger

    package init(manager: ExportManager, configuration: ServeConfiguration, records: any ExportObserver, logger: Logger) {
        self.manager = manager
        self.configuration = Mutex(configuration)
        self.records = records
        self.logger = logger
    }

    /// Every command `handle` knows (and `qmp_capabilities`, which the server answers itself),
    /// as `query-commands` lists them.
    package static let names = [
        "qmp_capabilities", "query-version", "query-commands", "blockdev-add", "blockdev-del", "query-named-block-nodes",
        "object-add", "object-del", "block-export-add", "block-export-del", "query-block-exports", "query-blockstats",
        "x-query-export-stats", "block_resize", "blockdev-snapshot-sync", "blockdev-snapshot", "quit",
    ] + jobCommands

    package func handle(_ command: String, _ arguments: OptionValue, emit: (String, OptionValue) -> Void) throws -> OptionValue {
        switch command {
        case "query-version":
            try OptionReader(arguments, syntax: .json).finish()
            return QMPServer.versionInfo
        case "query-commands":
            try OptionReader(arguments, syntax: .json).finish()
            return .list(Self.names.map { .object([("name", .string($0))]) })
        case "blockdev-add":
            let node = try BlockNodeOptions(arguments, syntax: .json)
            try configuration.withLock { c throws(OptionError) in try c.addBlockdev(node) }
            return .object([])
        case "blockdev-del":
            var r = try OptionReader(arguments, syntax: .json)
            let name = try r.requiredString("node-name")
            try r.finish()
            try configuration.withLock { c throws(OptionError) in try c.removeBlockdev(nodeName: name) }
            return .object([])
        case "query-named-block-nodes":
            var r = try OptionReader(arguments, syntax: .json)
            _ = try r.bool("flat")  // the list is flat either way: no backing-image trees
            try r.finish()
            let c = configuration.withLock { $0 }
            let exported = Dictionary(manager.exports.map { ($0.nodeName, $0.sizeBytes) }, uniquingKeysWith: { a, _ in a })
            return .list(c.nodeNames.reversed().compactMap { QMPNodeInfo.describe($0, in: c, exportedSize: exported[$0]) })
        case "object-add":
            let id = try configuration.withLock { c throws(OptionError) in try c.addObject(arguments, syntax: .json) }
            do {
                try manager.addIOThread(id)
            } catch {
                try? configuration.withLock { c throws(OptionError) in try c.removeObject(id: id) }
                throw error
            }
            return .object([])
        case "object-del":
            var r = try OptionReader(arguments, syntax: .json)
            let id = try r.requiredString("id")
            try r.finish()
            try configuration.withLock { c throws(OptionError) in try c.removeObject(id: id) }
            manager.removeIOThread(id)
            return .object([])
        case "block-export-add":
            let options = try BlockExportOptions(arguments, syntax: .json)
            // Checked against the live state, and reserved while the device is created.
            let plan = try configuration.withLock { c throws(OptionError) in try c.addExport(options) }
            do {
                let status = try manager.add(plan)
                do {
                    try records.add(plan, status)
                } catch {
                    try? manager.remove(id: plan.id)
                    throw error
                }
            } catch {
                configuration.withLock { $0.removeExport(id: plan.id) }
                throw error
            }
            return .object([])
        case "block-export-del":
            var r = try OptionReader(arguments, syntax: .json)
            let id = try r.requiredString("id")
            _ = try r.enumeration("mode", ["safe", "hard"])
            try r.finish()
            guard let status = manager.status(id: id) else { throw QMPServer.CommandError("Export '\(id)' is not found") }
            if status.shuttingDown { throw QMPServer.CommandError("Export '\(id)' is already shutting down") }
            try manager.remove(id: id)
            records.remove(name: status.name)
            configuration.withLock { $0.removeExport(id: id) }
            emit("BLOCK_EXPORT_DELETED", .object([("id", .string(id))]))
            return .object([])
        case "query-block-exports":
            try OptionReader(arguments, syntax: .json).finish()
            return .list(manager.exports.map {
                .object([("type", .string("vduse-blk")), ("id", .string($0.id)), ("node-name", .string($0.nodeName)),
                         ("shutting-down", .bool($0.shuttingDown))])
            })
        case "query-blockstats":
            var r = try OptionReader(arguments, syntax: .json)
            _ = try r.bool("query-nodes")  // each export's node is listed either way
            try r.finish()
            return .list(manager.statistics().map(QMPStats.blockStats))
        case "x-query-export-stats":
            var r = try OptionReader(arguments, syntax: .json)
            let id = try r.string("id")
            try r.finish()
            let stats = manager.statistics(id: id)
            if let id, stats.isEmpty { throw QMPServer.CommandError("Export '\(id)' is not found") }
            return .list(try stats.map(QMPStats.exportStats))
        case "block_resize":
            var r = try OptionReader(arguments, syntax: .json)
            let node = try r.string("node-name")
            _ = try r.string("device")
            guard let size = try r.unsigned("size", max: UInt64(Int64.max), typeName: "int64_t") else {
                throw QMPServer.CommandError("Parameter 'size' is missing")
            }
            try r.finish()
            guard let node else { throw QMPServer.CommandError("Cannot find device='' nor node-name=''") }
            try manager.resize(nodeName: node, to: size)
            if let s = manager.exports.first(where: { $0.nodeName == node }) { records.resized(name: s.name, to: s.sizeBytes) }
            return .object([])
        case "blockdev-snapshot-sync":
            var r = try OptionReader(arguments, syntax: .json)
            let device = try r.string("device")
            let node = try r.string("node-name")
            let file = try r.requiredString("snapshot-file")
            _ = try r.string("snapshot-node-name")
            let format = try r.string("format") ?? "qcow2"
            let mode = try r.enumeration("mode", ["existing", "absolute-paths"]) ?? "absolute-paths"
            try r.finish()
            guard let name = node ?? device, node == nil || device == nil else {
                throw QMPServer.CommandError("Cannot find device='\(device ?? "")' nor node-name='\(node ?? "")'")
            }
            guard format == "qcow2" else { throw QMPServer.CommandError("snapshot format '\(format)' is not supported (qcow2 only)") }
            guard mode == "absolute-paths" else { throw QMPServer.CommandError("snapshot mode 'existing' is not supported: the overlay is created") }
            let records = self.records
            _ = try manager.snapshot(of: name, file: file, record: { try records.switched($0) })
            return .object([])
        case "blockdev-snapshot":
            var r = try OptionReader(arguments, syntax: .json)
            let node = try r.requiredString("node")
            let overlay = try r.requiredString("overlay")
            try r.finish()
            guard let spec = configuration.withLock({ $0.context.nodes[overlay] }) else {
                throw QMPServer.CommandError("Cannot find device='\(overlay)' nor node-name='\(overlay)'")
            }
            let records = self.records
            _ = try manager.snapshot(of: node, onto: spec, record: { try records.switched($0) })
            return .object([])
        case "quit":
            kill(getpid(), SIGTERM)  // the main thread's sigwait takes it and shuts down
            return .object([])
        case _ where Self.jobCommands.contains(command):
            return try handleJob(command, arguments)
        default:
            throw QMPServer.CommandError("The command \(command) has not been found", errorClass: "CommandNotFound")
        }
    }
}

/// Told when QMP changes the set of exports (the serve loop keeps its state records with it).
package protocol ExportObserver: Sendable {
    func add(_ plan: ExportPlan, _ status: ExportStatus) throws
    func remove(name: String)
    func resized(name: String, to bytes: UInt64)
    /// Before a live switch takes effect: a throw keeps the export where it is.
    func switched(_ change: BackendSwitch) throws
}
