import Kernel
import Foundation
import Glibc
import QAPI
import QMP
import QCOW2
import Wire

/// `snapshot` (and later `commit`, `mirror`): operations on a running disk, done by its server
/// through its QMP socket with QEMU's commands, so QMP clients and these verbs share one path.
extension Provisioner {
    /// The running export `name` and its QMP socket, or why there is none.
    func runningExport(_ name: String, verb: String) throws(ProvisioningError) -> (ExportRecord, String) {
        guard let record = state.read(name) else { throw ProvisioningError(.notFound, "no export named '\(name)'") }
        guard record.state == .running, let socket = record.socket else {
            throw ProvisioningError(.notFound, "export '\(name)' has no running server to \(verb)")
        }
        if PersistentExports.standard.isPersistent(name) {
            throw ProvisioningError(.invalidOptions, "export '\(name)' is persistent (add --persist): its boot configuration cannot follow a \(verb) yet")
        }
        return (record, socket)
    }

    /// Where `snapshot NAME` puts its overlay without a PATH: beside `add --overlay`'s overlays,
    /// `NAME-N.qcow2` with the first N not taken.
    public static func defaultSnapshotPath(name: String) -> String {
        var n = 1
        while access("\(Overlays.directory)/\(name)-\(n).qcow2", F_OK) == 0 { n += 1 }
        return "\(Overlays.directory)/\(name)-\(n).qcow2"
    }

    /// Freezes the image export `name` serves and moves the disk to a new qcow2 overlay over it
    /// (QMP blockdev-snapshot-sync); the frozen image stays open read-only under the overlay.
    public func snapshot(name: String, path: String?) throws(ProvisioningError) -> SnapshotResult {
        let (record, socket) = try runningExport(name, verb: "snapshot")
        if record.readOnly {
            throw ProvisioningError(.invalidOptions, "export '\(name)' is read-only: nothing writes to its image, so there is nothing to snapshot")
        }
        let overlay = path.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? Self.defaultSnapshotPath(name: name)
        if access(overlay, F_OK) == 0 {
            throw ProvisioningError(.conflict, "\(overlay) exists: a snapshot creates its overlay (choose another PATH)")
        }
        if path == nil {
            do {
                try FileManager.default.createDirectory(atPath: Overlays.directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw ProvisioningError(.kernel, "cannot create \(Overlays.directory): \(error)")
            }
        }
        do {
            _ = try QMPClient.execute(socket: socket, command: "blockdev-snapshot-sync",
                                      arguments: .object([("device", .string(record.id)), ("snapshot-file", .string(overlay)),
                                                          ("format", .string("qcow2"))]))
        } catch {
            throw ProvisioningError(.kernel, "cannot snapshot '\(name)': \(error)"
                                    + (recordNames(name, image: overlay) ? "; the switch to \(overlay) was recorded: the disk comes back on it" : ""))
        }
        logger.info("export \(name): \(record.image) frozen, writes go to \(overlay)")
        return SnapshotResult(name: name, frozen: record.image, active: overlay)
    }
}

/// What `commit` did.
public struct CommitResult: Codable, Sendable, Equatable {
    public var name: String
    /// The image the disk is on now: the base of the chain.
    public var image: String
    /// The overlays merged into it (deleted unless `--keep`).
    public var merged: [String]
    public var deleted: Bool
}

extension Provisioner {
    /// Merges the overlays of export `name` into the base of its chain while the disk runs
    /// (QMP block-commit, completed once ready), then deletes them unless `keep`. `interrupted`
    /// cancels: the disk stays on its overlay, nothing is deleted.
    public func commit(name: String, keep: Bool, interrupted: @escaping () -> Bool,
                       progress: (JobProgress) -> Void) throws(ProvisioningError) -> CommitResult {
        let (record, socket) = try runningExport(name, verb: "commit")
        if record.readOnly {
            throw ProvisioningError(.invalidOptions, "export '\(name)' is read-only: there is nothing to commit")
        }
        let chain: [String]
        do {
            chain = try Qcow2Image.chain(of: record.image)
        } catch {
            throw ProvisioningError(.invalidOptions, "cannot read the chain of \(record.image): \(error)")
        }
        guard chain.count >= 2, let base = chain.last else {
            throw ProvisioningError(.invalidOptions, "export '\(name)' serves \(record.image), which has no backing file: there is nothing to commit")
        }
        let jobID = "commit-\(name)"
        let end: JobEnd
        do {
            let session = try QMPSession(socket: socket)
            end = try JobRunner.run(session: session, jobID: jobID, start: { s in
                _ = try s.execute("block-commit", .object([("job-id", .string(jobID)), ("device", .string(record.id)),
                                                           ("auto-dismiss", .bool(false))]))
            }, interrupted: interrupted, progress: progress)
        } catch let e as ProvisioningError {
            throw e
        } catch {
            throw ProvisioningError(.kernel, "cannot commit '\(name)': \(error)"
                                    + (recordNames(name, image: base) ? "; the switch to \(base) was recorded: the disk comes back on it (the overlays are kept)" : ""))
        }
        switch end {
        case .cancelled:
            throw ProvisioningError(.cancelled, "commit of '\(name)' cancelled: the disk stays on \(record.image)")
        case let .failed(why):
            throw ProvisioningError(.kernel, "commit of '\(name)' failed: \(why); the disk stays on \(record.image)")
        case .completed:
            break
        }
        let merged = Array(chain.dropLast())
        if !keep {
            for file in merged where unlink(file) != 0 && errno != ENOENT {
                throw ProvisioningError(.kernel, "committed '\(name)' into \(base), but cannot delete \(file)", because: SystemError("unlink", errno: errno))
            }
        }
        logger.info("export \(name): \(merged.joined(separator: ", ")) merged into \(base)")
        return CommitResult(name: name, image: base, merged: merged, deleted: !keep)
    }
}

/// What `mirror` did.
public struct MirrorResult: Codable, Sendable, Equatable {
    public var name: String
    /// The image the disk is on now.
    public var image: String
    /// The image it left, and whether it was deleted.
    public var source: String
    public var sourceDeleted: Bool
}

extension Provisioner {
    /// Copies the disk of export `name` to the file or block device `target` while it runs
    /// (QMP blockdev-add + blockdev-mirror, completed once ready), switches the disk to it and
    /// deletes the source image file unless `keepSource`. A target that exists must have the
    /// disk's size, and hold no data unless `force`. `interrupted` cancels: the disk stays on
    /// its source and a target created here is removed.
    public func mirror(name: String, target: String, format: AddRequest.Format?, keepSource: Bool, force: Bool,
                       interrupted: @escaping () -> Bool, progress: (JobProgress) -> Void) throws(ProvisioningError) -> MirrorResult {
        let (record, socket) = try runningExport(name, verb: "mirror")
        if record.readOnly {
            throw ProvisioningError(.invalidOptions, "export '\(name)' is read-only: a mirror moves a writable disk")
        }
        if NetworkURI.isURI(target) {
            throw ProvisioningError(.invalidOptions, "mirror to '\(target)': network targets (nbd://, rbd:) are not supported yet")
        }
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
                try Self.createTarget(path, format: resolved, size: size)
            } catch {
                throw ProvisioningError(.invalidOptions, "cannot create \(path): \(error)")
            }
        }
        let created = !exists
        // Node names of their own: an earlier mirror's target nodes stay in the server (the disk is on them).
        let jobID = "mirror-\(name)", node = "mirror-\(name)-\(getpid())", fileNode = "mirror-\(name)-\(getpid())-file"
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
                _ = try s.execute("blockdev-add", .object([("driver", .string(isDevice ? "host_device" : "file")),
                                                           ("node-name", .string(fileNode)), ("filename", .string(path))]))
                added.append(fileNode)
                _ = try s.execute("blockdev-add", .object([("driver", .string(resolved.rawValue)), ("node-name", .string(node)),
                                                           ("file", .string(fileNode))]))
                added.append(node)
                _ = try s.execute("blockdev-mirror", .object([("job-id", .string(jobID)), ("device", .string(record.id)),
                                                              ("target", .string(node)), ("sync", .string("full")),
                                                              ("auto-dismiss", .bool(false))]))
            }, interrupted: interrupted, progress: progress)
        } catch {
            // A server that died after recording the switch comes back on the target: keep it.
            let switched = recordNames(name, image: path)
            if created && !switched { unlink(path) }
            // Our own failures keep their status; the server's refusals are classified here.
            if let e = error as? ExportError, !(e.cause is QMPErrorReply), !switched { throw e }
            let status: ExitStatus = "\(error)".contains("lock") ? .conflict : .kernel
            throw ProvisioningError(status, "cannot mirror '\(name)' to \(path): \(error)"
                                    + (switched ? "; the switch to \(path) was recorded: the disk comes back on it" : ""))
        }
        switch end {
        case .completed:
            break
        case .cancelled:
            if created { unlink(path) }
            throw ProvisioningError(.cancelled, "mirror of '\(name)' cancelled: the disk stays on \(record.image)")
        case let .failed(why):
            if created { unlink(path) }
            throw ProvisioningError(.kernel, "mirror of '\(name)' failed: \(why); the disk stays on \(record.image)")
        }
        var deleted = false
        var source = stat()
        if !keepSource, stat(record.image, &source) == 0, source.st_mode & S_IFMT == S_IFREG {
            deleted = unlink(record.image) == 0
        }
        logger.info("export \(name): moved from \(record.image) to \(path)")
        return MirrorResult(name: name, image: path, source: record.image, sourceDeleted: deleted)
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
