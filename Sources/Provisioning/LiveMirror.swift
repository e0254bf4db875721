import Kernel
import Foundation
import Glibc
import QAPI
import QMP
import QCOW2
import Wire

/// What `mirror` did.
public struct MirrorResult: Codable, Sendable, Equatable {
    public var name: String
    /// The image the disk is on now (a path, or a network image's URI).
    public var image: String
    /// The image it left, and whether it was deleted.
    public var source: String
    public var sourceDeleted: Bool
}

/// A mirror's target, checked and ready to be added to the server: the blockdev-add arguments
/// of its nodes (the last one is the target), how to name it, and a file made here for it.
struct MirrorTarget {
    var image: String
    var nodes: [OptionValue]
    var created: String?
}

extension Provisioner {
    /// Copies the disk of export `name` to `target` while it runs (QMP blockdev-add +
    /// blockdev-mirror, completed once ready), switches the disk to it and deletes the source
    /// image file unless `keepSource`. `target` is a file or block device (created if missing;
    /// one that exists must have the disk's size and hold no data unless `force`), or an NBD or
    /// RBD URI (it must exist with the disk's size; one whose first MiB is not zeros is
    /// overwritten only with `force`). `interrupted` cancels: the disk stays on its source and a
    /// target created here is removed.
    public func mirror(name: String, target: String, format: AddRequest.Format?, keepSource: Bool, force: Bool, speed: UInt64 = 0,
                       interrupted: @escaping () -> Bool, progress: (JobProgress) -> Void) throws(ProvisioningError) -> MirrorResult {
        let (record, socket) = try runningExport(name, verb: "mirror")
        if record.readOnly {
            throw ProvisioningError(.invalidOptions, "export '\(name)' is read-only: a mirror moves a writable disk")
        }
        // Node names of their own: an earlier mirror's target nodes stay in the server (the disk is on them).
        let node = "mirror-\(name)-\(getpid())"
        let prepared = try NetworkURI.isURI(target)
            ? Self.networkTarget(target, record: record, node: node, format: format, force: force, probe: probeTarget)
            : Self.fileTarget(target, record: record, node: node, format: format, force: force)
        let jobID = "mirror-\(name)"
        var added: [String] = []
        var end = JobEnd.cancelled
        do {
            let session = try QMPSession(socket: socket)
            defer {
                if end != .completed {
                    for n in added.reversed() { _ = try? session.execute("blockdev-del", .object([("node-name", .string(n))])) }
                }
            }
            end = try JobRunner.run(session: session, jobID: jobID, start: { s in
                for arguments in prepared.nodes {
                    _ = try s.execute("blockdev-add", arguments)
                    if case let .object(o) = arguments, case let .string(n)? = o.first(where: { $0.key == "node-name" })?.value {
                        added.append(n)
                    }
                }
                _ = try s.execute("blockdev-mirror", .object([("job-id", .string(jobID)), ("device", .string(record.id)),
                                                              ("target", .string(node)), ("sync", .string("full")),
                                                              ("auto-dismiss", .bool(false))] + JobRunner.speedArgument(speed)))
            }, interrupted: interrupted, progress: progress)
        } catch {
            // A server that died after recording the switch comes back on the target: keep it.
            let switched = recordNames(name, image: prepared.image)
            if let created = prepared.created, !switched { unlink(created) }
            // Our own failures keep their status; the server's refusals are classified here.
            if let e = error as? ExportError, !(e.cause is QMPErrorReply), !switched { throw e }
            let status: ExitStatus = "\(error)".contains("lock") ? .conflict : .kernel
            throw ProvisioningError(status, "cannot mirror '\(name)' to \(prepared.image): \(error)"
                                    + (switched ? "; the switch to \(prepared.image) was recorded: the disk comes back on it" : ""))
        }
        switch end {
        case .completed:
            break
        case .cancelled:
            if let created = prepared.created { unlink(created) }
            throw ProvisioningError(.cancelled, "mirror of '\(name)' cancelled: the disk stays on \(record.image)")
        case let .failed(why):
            if let created = prepared.created { unlink(created) }
            throw ProvisioningError(.kernel, "mirror of '\(name)' failed: \(why); the disk stays on \(record.image)")
        }
        var deleted = false
        var source = stat()
        if !keepSource, !NetworkURI.isURI(record.image), stat(record.image, &source) == 0, source.st_mode & S_IFMT == S_IFREG {
            deleted = unlink(record.image) == 0
        }
        logger.info("export \(name): moved from \(record.image) to \(prepared.image)")
        return MirrorResult(name: name, image: prepared.image, source: record.image, sourceDeleted: deleted)
    }

    /// A file or block device: created (raw, or qcow2) when missing; else of the disk's size, its
    /// format as `format` says, and empty (no allocated blocks; a block device always counts as
    /// holding data) unless `force`.
    static func fileTarget(_ target: String, record: ExportRecord, node: String, format: AddRequest.Format?,
                           force: Bool) throws(ProvisioningError) -> MirrorTarget {
        let path = URL(fileURLWithPath: target).standardizedFileURL.path
        let size = record.size
        if path == record.image {
            throw ProvisioningError(.invalidOptions, "\(path) is the image the disk is on")
        }
        var st = stat()
        let exists = stat(path, &st) == 0
        let isDevice = exists && st.st_mode & S_IFMT == S_IFBLK
        let resolved: AddRequest.Format
        if exists {
            let probed = isDevice ? AddRequest.Format.raw : AddRequest(image: path).resolvedFormat
            if let format, format != probed {
                throw ProvisioningError(.invalidOptions, "\(path) is a \(probed.rawValue) image, not \(format.rawValue)")
            }
            resolved = probed
            let targetSize: UInt64
            if isDevice {
                targetSize = ShrinkGuard.number("/sys/class/block/\((path as NSString).lastPathComponent)/size").map { $0 * 512 } ?? 0
            } else if probed == .qcow2 {
                targetSize = (try? Qcow2Image(path: path, readOnly: true, backing: .none).virtualSize) ?? 0
            } else {
                targetSize = UInt64(st.st_size)
            }
            guard targetSize == size else {
                throw ProvisioningError(.invalidOptions, "\(path) has \(targetSize) bytes, the disk \(size): a mirror target must have the disk's size")
            }
            if !force, isDevice || st.st_blocks > 0 {
                throw ProvisioningError(.conflict, "\(path) exists and may hold data: use --force to overwrite it")
            }
        } else {
            resolved = format ?? (path.hasSuffix(".qcow2") ? .qcow2 : .raw)
            do {
                try createTarget(path, format: resolved, size: size)
            } catch {
                throw ProvisioningError(.invalidOptions, "cannot create \(path): \(error)")
            }
        }
        let fileNode = node + "-file"
        return MirrorTarget(image: path, nodes: [
            .object([("driver", .string(isDevice ? "host_device" : "file")), ("node-name", .string(fileNode)), ("filename", .string(path))]),
            .object([("driver", .string(resolved.rawValue)), ("node-name", .string(node)), ("file", .string(fileNode))]),
        ], created: exists ? nil : path)
    }

    /// An NBD export or RBD image, as `add` takes them: written raw, never created here (the
    /// server or cluster owns it), reached from this command first to see that it answers, has
    /// exactly the disk's size (the disk's capacity is fixed, and a restarted server would serve
    /// all of a larger target) and, unless `force`, that its first MiB reads as zeros.
    static func networkTarget(_ target: String, record: ExportRecord, node: String, format: AddRequest.Format?,
                              force: Bool, probe probeTarget: (@Sendable (BackendSpec) throws -> (size: UInt64, headIsZero: Bool))?)
        throws(ProvisioningError) -> MirrorTarget {
        if let format, format != .raw {
            throw ProvisioningError(.invalidOptions, "a network target is written raw: --format \(format.rawValue) needs a file")
        }
        let spec: BackendSpec
        var arguments: [(key: String, value: OptionValue)] = []
        if target.hasPrefix("rbd:") {
            let r = try NetworkURI.rbd(target)
            guard r.snapshot == nil else {
                throw ProvisioningError(.invalidOptions, "\(target) names an RBD snapshot, which is read-only: a mirror writes its target")
            }
            spec = BackendSpec(kind: .rbd(r))
            arguments = [("driver", .string("rbd")), ("node-name", .string(node)), ("pool", .string(r.pool)), ("image", .string(r.image))]
            if !r.namespace.isEmpty { arguments.append(("namespace", .string(r.namespace))) }
            if let c = r.conf { arguments.append(("conf", .string(c))) }
            if let u = r.user { arguments.append(("user", .string(u))) }
        } else {
            let n = try NetworkURI.nbd(target)
            spec = BackendSpec(kind: .nbd(n))
            let server: OptionValue = switch n.server {
            case let .inet(host, port): .object([("type", .string("inet")), ("host", .string(host)), ("port", .string(port))])
            case let .unix(path): .object([("type", .string("unix")), ("path", .string(path))])
            }
            arguments = [("driver", .string("nbd")), ("node-name", .string(node)), ("server", server)]
            if !n.export.isEmpty { arguments.append(("export", .string(n.export))) }
        }
        let image = spec.pathDescription
        if image == record.image {
            throw ProvisioningError(.invalidOptions, "\(image) is the image the disk is on")
        }
        guard let probeTarget else {
            throw ProvisioningError(.kernel, "cannot mirror '\(record.name)' to \(image): this build cannot open network images")
        }
        let probe: (size: UInt64, headIsZero: Bool)
        do {
            probe = try probeTarget(spec)
        } catch {
            throw ProvisioningError(.kernel, "cannot mirror '\(record.name)' to \(image): \(error)")
        }
        guard probe.size == record.size else {
            throw ProvisioningError(.invalidOptions, "\(image) has \(probe.size) bytes, the disk \(record.size): a mirror target must have the disk's size")
        }
        if !force && !probe.headIsZero {
            throw ProvisioningError(.conflict, "\(image) may hold data (its first MiB is not all zeros): use --force to overwrite it")
        }
        return MirrorTarget(image: image, nodes: [.object(arguments)], created: nil)
    }

    /// A new empty target of `size` bytes: a sparse raw file, or a qcow2 image without backing.
    static func createTarget(_ path: String, format: AddRequest.Format, size: UInt64) throws {
        switch format {
        case .qcow2:
            try Qcow2Image.create(path: path, size: size)
        case .raw:
            let raw = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard raw >= 0 else { throw SystemError("open", errno: errno) }
            let fd = UniqueFD(taking: raw)
            guard ftruncate(fd.rawValue, off_t(size)) == 0 else {
                let e = errno
                unlink(path)
                throw SystemError("ftruncate", errno: e)
            }
        }
    }
}
