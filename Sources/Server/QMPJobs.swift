import Core
import QAPI

/// QEMU's block job commands: block-commit starts one (blockdev-mirror too, later), query-jobs
/// and query-block-jobs list them, job-* and block-job-* drive them by id.
extension QMPCommands {
    static let jobCommands = [
        "block-commit", "blockdev-mirror", "query-jobs", "query-block-jobs", "job-cancel", "job-complete", "job-dismiss", "job-finalize",
        "block-job-cancel", "block-job-complete", "block-job-set-speed",
    ]

    func handleJob(_ command: String, _ arguments: OptionValue) throws -> OptionValue {
        var r = try OptionReader(arguments, syntax: .json)
        let jobs = manager.jobs
        do {
            switch command {
            case "block-commit":
                let options = try Self.jobOptions(&r)
                let device = try r.requiredString("device")
                for unsupported in ["base-node", "base", "top-node", "top", "backing-file", "filter-node-name"] {
                    if try r.string(unsupported) != nil {
                        throw QMPServer.CommandError("Parameter '\(unsupported)' is not supported: the whole chain above its base is committed into the base")
                    }
                }
                _ = try r.bool("backing-mask-protocol")
                _ = try r.enumeration("on-error", ["report", "ignore", "enospc", "stop", "auto"])
                try r.finish()
                let records = self.records
                _ = try manager.startCommit(of: device, options: options, record: { try records.switched($0) })
                return .object([])
            case "blockdev-mirror":
                let options = try Self.jobOptions(&r)
                let device = try r.requiredString("device")
                let target = try r.requiredString("target")
                guard let sync = try r.enumeration("sync", ["top", "full", "none", "incremental", "bitmap"]) else {
                    throw QMPServer.CommandError("Parameter 'sync' is missing")
                }
                guard sync == "full" else { throw QMPServer.CommandError("sync '\(sync)' is not supported: only 'full'") }
                for unsupported in ["replaces", "filter-node-name"] {
                    if try r.string(unsupported) != nil { throw QMPServer.CommandError("Parameter '\(unsupported)' is not supported") }
                }
                _ = try r.unsigned("granularity", max: 1 << 26, typeName: "uint32")
                _ = try r.unsigned("buf-size", max: UInt64(Int64.max), typeName: "int64")
                _ = try r.enumeration("on-source-error", ["report", "ignore", "enospc", "stop", "auto"])
                _ = try r.enumeration("on-target-error", ["report", "ignore", "enospc", "stop", "auto"])
                if try r.enumeration("copy-mode", ["background", "write-blocking"]) == "write-blocking" {
                    throw QMPServer.CommandError("copy-mode 'write-blocking' is not supported: writes are tracked and copied again")
                }
                _ = try r.bool("unmap")
                try r.finish()
                guard let spec = configuration.withLock({ $0.context.nodes[target] }) else {
                    throw QMPServer.CommandError("Cannot find device='\(target)' nor node-name='\(target)'")
                }
                let records = self.records
                _ = try manager.startMirror(of: device, to: spec, options: options, record: { try records.switched($0) })
                return .object([])
            case "query-jobs":
                try r.finish()
                return .list(jobs.all.filter { $0.status != .null }.map { j in
                    var o: [(key: String, value: OptionValue)] = [
                        ("id", .string(j.id)), ("type", .string(j.type.rawValue)), ("status", .string(j.status.rawValue)),
                        ("current-progress", .integer(j.offset)), ("total-progress", .integer(j.length)),
                    ]
                    if let e = j.error { o.append(("error", .string(e))) }
                    return .object(o)
                })
            case "query-block-jobs":
                try r.finish()
                return .list(jobs.all.filter { $0.status != .null }.map { j in
                    var o: [(key: String, value: OptionValue)] = [
                        ("type", .string(j.type.rawValue)), ("device", .string(j.id)), ("len", .integer(j.length)),
                        ("offset", .integer(j.offset)), ("busy", .bool(j.status == .running)), ("paused", .bool(false)),
                        ("speed", .integer(Int(j.speed))), ("io-status", .string("ok")), ("ready", .bool(j.ready)),
                        ("status", .string(j.status.rawValue)), ("auto-finalize", .bool(j.autoFinalize)),
                        ("auto-dismiss", .bool(j.autoDismiss)),
                    ]
                    if let e = j.error { o.append(("error", .string(e))) }
                    return .object(o)
                })
            case "job-cancel", "job-complete", "job-dismiss", "job-finalize":
                let id = try r.requiredString("id")
                try r.finish()
                switch command {
                case "job-cancel": try jobs.cancel(id: id)
                case "job-complete": try jobs.complete(id: id)
                case "job-dismiss": try jobs.dismiss(id: id)
                default:
                    // Every job finalizes on its own (auto-finalize is always on).
                    throw QMPServer.CommandError("Job '\(id)' finalizes on its own (auto-finalize)")
                }
                return .object([])
            case "block-job-cancel", "block-job-complete":
                let device = try r.requiredString("device")
                _ = try r.bool("force")
                try r.finish()
                guard jobs.all.contains(where: { $0.id == device }) else {
                    throw QMPServer.CommandError("Block job '\(device)' not found", errorClass: "DeviceNotActive")
                }
                if command == "block-job-cancel" { try jobs.cancel(id: device) } else { try jobs.complete(id: device) }
                return .object([])
            case "block-job-set-speed":
                let device = try r.requiredString("device")
                let speed = try Self.speed(&r, required: true)
                try r.finish()
                guard jobs.all.contains(where: { $0.id == device && $0.status != .null }) else {
                    throw QMPServer.CommandError("Block job '\(device)' not found", errorClass: "DeviceNotActive")
                }
                try jobs.setSpeed(id: device, speed: speed)
                return .object([])
            default:
                throw QMPServer.CommandError("The command \(command) has not been found", errorClass: "CommandNotFound")
            }
        } catch let e as JobError {
            throw QMPServer.CommandError(e.description)
        }
    }

    /// QEMU's `speed` (bytes per second, 0: no limit): an int64 that must not be negative.
    static func speed(_ r: inout OptionReader, required: Bool = false) throws -> UInt64 {
        guard let speed = try r.signed("speed") else {
            if required { throw QMPServer.CommandError("Parameter 'speed' is missing") }
            return 0
        }
        guard speed >= 0 else { throw QMPServer.CommandError("Invalid parameter 'speed'") }
        return UInt64(speed)
    }

    /// job-id, auto-finalize, auto-dismiss and speed, as every block job command takes them.
    static func jobOptions(_ r: inout OptionReader) throws -> JobOptions {
        var o = JobOptions()
        o.id = try r.string("job-id")
        if try r.bool("auto-finalize") == false {
            throw QMPServer.CommandError("auto-finalize=false is not supported: jobs finalize on their own")
        }
        o.autoDismiss = try r.bool("auto-dismiss") ?? true
        o.speed = try speed(&r)
        return o
    }
}
