import Kernel
import Foundation
import Glibc
import QAPI
import QMP
import QCOW2
import Wire

/// `snapshot`, `commit` (and `mirror`, LiveMirror.swift): operations on a running disk, done by
/// its server through its QMP socket with QEMU's commands, so QMP clients and these verbs share
/// one path. The server records each switch, and rewrites a persistent export's configuration,
/// before it takes effect.
extension Provisioner {
    /// The running export `name` and its QMP socket, or why there is none.
    func runningExport(_ name: String, verb: String) throws(ProvisioningError) -> (ExportRecord, String) {
        guard let record = state.read(name) else { throw ProvisioningError(.notFound, "no export named '\(name)'") }
        guard record.state == .running, let socket = record.socket else {
            throw ProvisioningError(.notFound, "export '\(name)' has no running server to \(verb)")
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
    public func commit(name: String, keep: Bool, speed: UInt64 = 0, interrupted: @escaping () -> Bool,
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
                                                           ("auto-dismiss", .bool(false))] + JobRunner.speedArgument(speed)))
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
