import BlockBackends
import Foundation
import Glibc
import Kernel
import QAPI
import QCOW2
import Wire

/// A switch of a running export from one image to another, as the state record keeps it.
public struct BackendSwitch: Sendable, Equatable {
    /// The VDUSE name (the record's name).
    public var name: String
    public var exportID: String
    public var from: BackendSpec
    public var to: BackendSpec
}

extension ExportManager {
    /// QEMU's `blockdev-snapshot-sync` (mode `absolute-paths`, format qcow2): creates `file`, an
    /// empty qcow2 overlay whose backing is the image the export `name` (export id or node name)
    /// serves, and switches the export to it while the disk stays in use. `record` runs before
    /// the switch takes effect (see `VDUSEBlockExport.switchBackend`). The file is removed if the
    /// switch does not happen.
    public func snapshot(of name: String, file: String, record: @escaping @Sendable (BackendSwitch) throws -> Void)
        throws -> SnapshotResult {
        try switchToOverlay(of: name, record: record) { plan, status, base, format, old in
            let path = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
            guard access(path, F_OK) != 0 else {
                throw ExportError("'\(path)' exists: a snapshot creates its overlay (choose another file)", code: .invalidOptions)
            }
            do {
                try Qcow2Image.create(path: path, size: status.sizeBytes, backing: (path: base, format: format))
                try Self.syncCreated(path)
            } catch {
                unlink(path)
                throw ExportError("cannot create the overlay \(path): \(error)", code: .invalidOptions)
            }
            return (Qcow2Spec(path: path, backing: .fromImage, l2CacheSize: old?.l2CacheSize, discardUnmap: old?.discardUnmap ?? false),
                    { unlink(path) })
        }
    }

    /// QEMU's `blockdev-snapshot`: the export `name` switches to `overlay`, a qcow2 image made
    /// beforehand (`qemu-img create -f qcow2 -b IMAGE -F FORMAT`) and added with `blockdev-add`.
    /// Its header must name the image the export serves as its backing file, so that a
    /// restarted server, which opens the chain the header names, serves the same disk; a
    /// `backing` given to `blockdev-add` (QEMU tooling passes `null`) is replaced by that chain.
    public func snapshot(of name: String, onto overlay: BackendSpec,
                         record: @escaping @Sendable (BackendSwitch) throws -> Void) throws -> SnapshotResult {
        guard case let .qcow2(q) = overlay.kind, !overlay.readOnly else {
            throw ExportError("the overlay of a snapshot must be a writable qcow2 node", code: .invalidOptions)
        }
        return try switchToOverlay(of: name, record: record) { _, status, base, _, _ in
            let named = (try? Qcow2Image.chain(of: q.path)) ?? []
            guard named.count >= 2, canonicalPath(named[1]) == canonicalPath(base) else {
                throw ExportError("'\(q.path)' does not name '\(base)' as its backing file (create it with qemu-img create -b)",
                                  code: .invalidOptions)
            }
            var spec = q
            spec.backing = .fromImage
            return (spec, {})
        }
    }

    /// The switch common to both snapshots: `prepare` makes or checks the overlay over `base`
    /// (the image served until now) and says how to undo that if the switch does not happen.
    private func switchToOverlay(
        of name: String, record: @escaping @Sendable (BackendSwitch) throws -> Void,
        prepare: (ExportPlan, ExportStatus, String, ImageFormat, Qcow2Spec?) throws -> (Qcow2Spec, undo: () -> Void)
    ) throws -> SnapshotResult {
        try withExport(named: name) { export, status in
            let plan = try export.run { $0.plan }
            // A job tracks the writes of the image it copies from: a switch under it would lose them.
            if let job = jobs.job(onExport: status.id) {
                throw ExportError("Node '\(name)' is busy: block device is in use by block job: \(job.type.rawValue)", code: .conflict)
            }
            guard plan.writable else {
                throw ExportError("export '\(status.id)' is read-only: a snapshot freezes the image a writable disk writes to",
                                  code: .invalidOptions)
            }
            let (base, format, old) = try Self.snapshotBase(plan.backend)
            let (overlay, undo) = try prepare(plan, status, base, format, old)
            let newPlan = plan.servingFrom(.qcow2(overlay))
            let change = BackendSwitch(name: plan.deviceName, exportID: plan.id, from: plan.backend, to: newPlan.backend)
            do {
                try export.run {
                    try $0.switchBackend(to: newPlan, open: { try ExportFactory.openBackend(newPlan, ownWriter: base) },
                                         record: { _ in
                                             _ = TestCrash.reached(.beforeSwitch)
                                             try record(change)
                                             _ = TestCrash.reached(.afterSwitch)
                                         })
                }
            } catch {
                undo()
                throw error
            }
            return SnapshotResult(name: plan.deviceName, frozen: base, active: overlay.path)
        }
    }

    /// The image a snapshot freezes: a regular raw file, or a qcow2 image reading through the
    /// backing chain its header names (an overlay's header can name only that).
    static func snapshotBase(_ spec: BackendSpec) throws(ExportError) -> (path: String, format: ImageFormat, qcow2: Qcow2Spec?) {
        switch spec.kind {
        case let .file(path):
            var st = stat()
            guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                throw ExportError("'\(path)' is not a regular file: a snapshot's overlay needs an image file as its backing",
                                  code: .invalidOptions)
            }
            return (path, .raw, nil)
        case let .qcow2(q):
            guard q.backing == .fromImage else {
                throw ExportError("'\(q.path)' is served with another backing than its header names: an overlay over it could not name that",
                                  code: .invalidOptions)
            }
            return (q.path, .qcow2, q)
        default:
            throw ExportError("\(spec.pathDescription) is not an image file: snapshots need a raw or qcow2 file", code: .invalidOptions)
        }
    }

    /// A new file is on stable storage, with its directory entry, before a record names it.
    static func syncCreated(_ path: String) throws(SystemError) {
        for target in [path, (path as NSString).deletingLastPathComponent] {
            let fd = try UniqueFD(open: target.isEmpty ? "." : target, O_RDONLY)
            guard fsync(fd.rawValue) == 0 else { throw SystemError("fsync(\(target))", errno: errno) }
        }
    }
}

extension ExportPlan {
    /// The same export over another image (a switch keeps everything else).
    func servingFrom(_ kind: BackendSpec.Kind) -> ExportPlan {
        var p = self
        p.backend.kind = kind
        return p
    }
}
