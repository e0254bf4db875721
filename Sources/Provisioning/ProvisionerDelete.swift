import Kernel
import QAPI
import QMP
import Core
import Foundation
import Glibc

extension Provisioner {
    /// A name `add` could have made: `[A-Za-z0-9._-]`, 1 to 255 bytes, not `.` or `..` (so it
    /// never names a path outside the state directory).
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && name != "." && name != ".." && Identifier.hasOnlyNameCharacters(name)
    }

    /// Removes the export `name`: refuses while its disk is in use unless `force`; stops a live
    /// server (SIGTERM, then waits), or cleans up after a dead one. A damaged record does not
    /// stop it: the server is found by the VDUSE device it holds. The overlay `add --overlay`
    /// made goes too, once nothing serves it, unless `keep`.
    public func delete(name: String, force: Bool, keep: Bool = false, timeout: TimeInterval = 120) throws {
        guard Self.isValidName(name) else {
            throw ProvisioningError(.invalidOptions, "invalid export name '\(name)': names are 1 to 255 of [A-Za-z0-9._-], not '.' or '..'")
        }
        let record: ExportRecord
        switch state.lookup(name) {
        case .missing:
            if FileManager.default.fileExists(atPath: "/dev/vduse/\(name)") {
                throw ProvisioningError(.notFound, "no export named '\(name)' is managed here (/dev/vduse/\(name) belongs to another program)")
            }
            throw ProvisioningError(.notFound, "no export named '\(name)'")
        case let .damaged(path):
            try deleteUnrecorded(name: name, force: force, timeout: timeout)
            unlink(path)
            state.remove(name)
            unlink(state.logPath(name))
            return
        case let .found(r):
            record = r
        }
        let alive = StateDirectory.processAlive(record.pid)
        if !force, !record.device.isEmpty, FileManager.default.fileExists(atPath: record.device) {
            try refuseWhileUsed(name: name, device: record.device, server: record.pid)
        }
        // A server with other exports too (serve --record with several): delete just this one.
        let siblings = state.all().filter { $0.pid == record.pid && $0.name != name }
        if alive, !siblings.isEmpty, let socket = record.socket {
            do {
                _ = try QMPClient.execute(socket: socket, command: "block-export-del", arguments: .object([("id", .string(record.id))]))
            } catch {
                throw ProvisioningError(.kernel, "cannot delete '\(name)' through its server's QMP socket: \(error)")
            }
            return  // the server removed its record
        }
        // Stop the supervisor first, even when the server is gone: otherwise it could start a
        // server again (which takes the device over, or makes a new one) while we remove it.
        let supervisor = record.supervisor.flatMap { Supervisor.isSupervisor($0) ? $0 : nil }
            ?? (alive ? Supervisor.of(server: record.pid) : nil)
        if alive || supervisor != nil { try stopServer(record.pid, supervisor: supervisor, name: name, timeout: timeout) }
        if FileManager.default.fileExists(atPath: "/dev/vduse/\(name)") {
            try removeOrphan(name: name, id: record.id, image: record.image, readOnly: record.readOnly,
                             size: record.size, queues: record.queues, serial: record.serial)
        }
        state.remove(name)
        unlink(state.logPath(name))
        if let overlay = record.overlay, !keep {
            if unlink(overlay) != 0 && errno != ENOENT {
                throw ExportError(.kernel, "removed '\(name)', but not its overlay \(overlay)", because: SystemError("unlink", errno: errno))
            }
            logger.info("deleted overlay \(overlay)")
        }
    }

    private func refuseWhileUsed(name: String, device: String, server: Int32) throws {
        let users = DeviceUsage.users(of: device, ignoringPID: server)
        if !users.isEmpty {
            throw ProvisioningError(.inUse, "export '\(name)' is in use: \(users.joined(separator: "; ")) (use --force to delete anyway)")
        }
    }

    /// SIGTERM to the supervisor (which passes it on and supervises no more) or the server, then
    /// waits for both to be gone.
    private func stopServer(_ pid: Int32, supervisor: Int32? = nil, name: String, timeout: TimeInterval) throws {
        kill(supervisor ?? pid, SIGTERM)
        let deadline = Deadline.after(seconds: timeout)
        while (StateDirectory.processAlive(pid) || supervisor.map(StateDirectory.processAlive) == true)
                && !deadline.hasPassed { usleep(20_000) }
        guard !StateDirectory.processAlive(pid) else {
            throw ProvisioningError(.kernel, "the server of '\(name)' (pid \(pid)) did not stop within \(Int(timeout)) s")
        }
    }

    /// The record is unreadable: what it would have said is read from the kernel instead.
    private func deleteUnrecorded(name: String, force: Bool, timeout: TimeInterval) throws {
        let device = DiskLocator.currentDisk(vdpaName: name) ?? ""
        let server = StateDirectory.serverHolding(vduseName: name)
        if !force, !device.isEmpty {
            try refuseWhileUsed(name: name, device: device, server: server ?? 0)
        }
        if let server { try stopServer(server, name: name, timeout: timeout) }
        guard FileManager.default.fileExists(atPath: "/dev/vduse/\(name)") else { return }
        let disk = (device as NSString).lastPathComponent
        let sectors = (try? String(contentsOfFile: "/sys/block/\(disk)/size", encoding: .utf8))
            .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let queues = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block/\(disk)/mq")) ?? []).count
        try removeOrphan(name: name, id: "e", image: nil, readOnly: false, size: sectors * 512,
                         queues: UInt16(clamping: max(queues, 1)), serial: "")
    }

    /// Reconnects to the device of a dead server and tears it down. In-flight requests go to the
    /// image if it can still be opened; if it is gone (deleted, moved, unmounted) or taken, to a
    /// null backend: the device must go either way, or the hung disk stays forever.
    private func removeOrphan(name: String, id: String, image: String?, readOnly: Bool, size: UInt64, queues: UInt16,
                              serial: String) throws {
        func plan(_ kind: BackendSpec.Kind) -> ExportPlan {
            ExportPlan(id: id, deviceName: name, backend: BackendSpec(kind: kind, readOnly: readOnly), writable: !readOnly,
                       numQueues: max(queues, 1), serial: serial)
        }
        do {
            let manager = try ExportManager(iothreads: [], logger: logger)
            defer { manager.shutdown() }
            if let image {
                do {
                    // The idle disk is served until it is gone: a qcow2 image must not be written as raw.
                    let request = AddRequest(image: image)
                    let kind: BackendSpec.Kind = if let n = try request.networkKind { n }
                        else if request.resolvedFormat == .qcow2 { .qcow2(Qcow2Spec(path: image)) }
                        else { .file(path: image) }
                    try manager.removeOrphan(plan(kind))
                    return
                } catch {
                    logger.warning("cannot reopen the image of '\(name)' (\(error)): removing the device without it")
                }
            }
            try manager.removeOrphan(plan(.null(size: size)))
        } catch {
            throw ProvisioningError(.kernel, "cannot clean up '\(name)': \(error)")
        }
    }
}
