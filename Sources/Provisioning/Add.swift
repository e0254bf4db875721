import Foundation
import Glibc
import Kernel
import QAPI
import Wire

extension AddRequest {
    /// `add BASE --overlay [PATH]`: the request exports a new qcow2 overlay over its image
    /// instead; without PATH the overlay is named after the base (or `--name`).
    public mutating func makeOverlay(at path: String?) {
        let base = AddRequest(image: image)
        overlayBase = base.absoluteImage
        overlayBaseFormat = format
        if path == nil { name = name ?? base.resolvedName }
        image = path ?? Overlays.defaultPath(name: resolvedName)
        format = .qcow2
    }
}

extension Provisioner {
    /// `add IMAGE`: starts a supervised server in the background and returns the record of its
    /// disk once it is usable; an export of the same name and image that runs already is
    /// returned as it is. `timeout` bounds everything (the lock, then the disk). With `persist`
    /// the export also comes back at boot. A failure leaves nothing this call created behind.
    public func add(_ request: AddRequest, persist: Bool, timeout: Double) throws -> ExportRecord {
        let request = try checked(request, timeout: timeout, persist: persist)
        // One add at a time: a concurrent add of the same image then finds this one's record and
        // returns the same disk instead of failing.
        let deadline = Deadline.after(seconds: timeout)
        var started = false
        let record = try whileLocked(until: deadline) { () throws -> ExportRecord in
            if let record = try existing(request) { return record }
            // The overlay first (the checks open the image); whatever fails after it removes it again.
            let created = try createOverlay(request)
            do {
                _ = try ServeConfiguration.build(objects: request.objects, blockdevs: request.blockdevs,
                                                 exports: [request.exportSpec])
                var record = try start(request, serveArguments: request.serveArguments, deadline: deadline)
                started = true
                if request.overlayBase != nil {
                    do {
                        record = try recordOverlay(record, request)
                    } catch {
                        try? delete(name: record.name, force: true)
                        throw error
                    }
                }
                return record
            } catch {
                if created { unlink(request.absoluteImage) }
                throw error
            }
        }
        try persistIfAsked(persist, request, started: started)
        return record
    }

    /// `add --foreground`: the running export of the same name and image if there is one
    /// (returned), else `serve` runs the export in this process with the configuration and QMP
    /// socket `add` would give its server, until it stops (nil).
    public func addInForeground(_ request: AddRequest, timeout: Double,
                                serve: (_ configuration: ServeConfiguration, _ qmpSocket: String) throws -> Void) throws -> ExportRecord? {
        let request = try checked(request, timeout: timeout, persist: false)
        if let record = try existing(request) { return record }
        let configuration = try ServeConfiguration.build(objects: request.objects, blockdevs: request.blockdevs,
                                                         exports: [request.exportSpec])
        try state.prepare()
        try serve(configuration, state.socketPath(request.resolvedName))
        return nil
    }

    /// What `add` refuses before anything is created, and what the image implies: a snapshot
    /// of an RBD image is exported read-only.
    func checked(_ request: AddRequest, timeout: Double, persist: Bool) throws -> AddRequest {
        guard timeout > 0, timeout.isFinite else {
            throw ProvisioningError(.invalidOptions, "--timeout must be a positive number of seconds")
        }
        var request = request
        if request.isURI {
            // A malformed URI is refused before anything starts.
            if case let .rbd(r)? = try request.networkKind, r.snapshot != nil { request.readOnly = true }
            if request.format == .qcow2 || request.direct || request.forceShare {
                throw ProvisioningError(.invalidOptions, "--format qcow2, --direct and --force-share apply to image files, not to network URIs")
            }
        }
        // Refuse what cannot be persisted before anything is created.
        if persist { _ = try PersistentExports.configText(name: request.resolvedName, serveArguments: request.serveArguments) }
        return request
    }

    /// Persists the export; if that fails, an export this command started is deleted again.
    private func persistIfAsked(_ persist: Bool, _ request: AddRequest, started: Bool) throws {
        guard persist else { return }
        do {
            try PersistentExports.standard.persist(name: request.resolvedName, serveArguments: request.serveArguments,
                                                   image: request.absoluteImage)
        } catch {
            if started { try? delete(name: request.resolvedName, force: true) }
            throw error
        }
    }
}
