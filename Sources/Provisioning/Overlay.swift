import Foundation
import Glibc
import Kernel
import QCOW2
import Wire

/// `add BASE --overlay [PATH]`: a qcow2 overlay over a base that stays unchanged (opened
/// read-only, with a reader's lock, so many overlays can share it). `add` creates it, the record
/// remembers it, a restarted server reopens it, `del` deletes it unless `--keep`.
public enum Overlays {
    /// `$VDUSE_EXPORT_OVERLAY_DIR` or /var/lib/vduse-export/overlays: persistent storage (not
    /// /run, which is memory and gone at reboot while a persistent export still needs it).
    public static var directory: String {
        ProcessInfo.processInfo.environment["VDUSE_EXPORT_OVERLAY_DIR"] ?? "/var/lib/vduse-export/overlays"
    }

    /// Where an overlay goes when `--overlay` has no PATH.
    public static func defaultPath(name: String) -> String { "\(directory)/\(name).qcow2" }
}

extension Provisioner {
    /// Creates the overlay `request.image` over `request.overlayBase` and returns true, or returns
    /// false when the file is this export's own overlay from before (its server is gone and the
    /// caller starts a new one, which takes the device over). Any other existing file is refused.
    public func createOverlay(_ request: AddRequest) throws -> Bool {
        guard let base = request.overlayBase else { return false }
        let path = request.absoluteImage
        if access(path, F_OK) == 0 {
            if state.read(request.resolvedName)?.overlay == path { return false }
            throw ProvisioningError(.conflict, "the overlay \(path) exists already: choose another PATH, or delete it")
        }
        if path.hasPrefix(Overlays.directory + "/") {
            try FileManager.default.createDirectory(atPath: Overlays.directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        }
        let format: ImageFormat = (request.overlayBaseFormat ?? AddRequest(image: base).resolvedFormat) == .qcow2 ? .qcow2 : .raw
        do {
            try Qcow2Image.create(path: path, backing: (path: base, format: format))
        } catch {
            throw ProvisioningError(access(base, F_OK) == 0 ? .kernel : .invalidOptions,
                                    "cannot create the overlay \(path) over \(base): \(error)")
        }
        logger.info("created overlay \(path) over \(base) (\(format.rawValue))")
        return true
    }

    /// Records that the export owns its overlay (so `del` deletes it).
    public func recordOverlay(_ record: ExportRecord, _ request: AddRequest) throws -> ExportRecord {
        var r = state.read(record.name) ?? record
        r.overlay = request.absoluteImage
        r.base = request.overlayBase
        try state.write(r)
        return r
    }
}
