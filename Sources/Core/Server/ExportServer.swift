import CVDUSE
import Foundation
import Glibc
import Logging

/// What `serve` reports for each export once its disk exists.
public struct ExportReadiness: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    /// The block device node, e.g. /dev/vda.
    public var device: String
    public var sizeBytes: UInt64
}

/// Runs exports until SIGINT/SIGTERM: creates each VDUSE device, serves it on its iothread,
/// binds it to the vdpa bus, reports the disk, and on the signal tears everything down in the
/// order the kernel needs (vdpa DEV_DEL, close, VDUSE_DESTROY_DEV).
public enum ExportServer {
    public static func run(_ plan: ServePlan, logger: Logger,
                           onReady: (ExportReadiness) -> Void = { _ in }) throws -> Int32 {
        // Signals are taken by sigwait on this thread only; block them before any thread starts.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        try KernelSupport.ensureVDUSE(logger: logger)
        let control: VDUSEControl
        do {
            control = try VDUSEControl()
        } catch {
            throw ServeError("failed to create vduse device: \(error)")
        }

        var threads: [String: IOThread] = [:]
        let mainLoop = try IOThread(name: "main-loop")
        mainLoop.start()
        for name in plan.iothreads {
            let t = try IOThread(name: name)
            t.start()
            threads[name] = t
        }
        var running: [VDUSEBlockExport] = []
        defer {
            for export in running.reversed() { teardown(export, control: control, logger: logger) }
            for t in threads.values { t.stop() }
            mainLoop.stop()
        }

        for exportPlan in plan.exports {
            let iothread = exportPlan.iothread.flatMap { threads[$0] } ?? mainLoop
            let export = try iothread.run {
                let e = try VDUSEBlockExport(plan: exportPlan, control: control, iothread: iothread, logger: logger)
                try e.attach()
                return e
            }
            do {
                try VDPANetlink.addDevice(name: exportPlan.deviceName)
            } catch {
                destroy(export, control: control, logger: logger)
                throw ServeError("vdpa: cannot add device '\(exportPlan.deviceName)': \(error.reason)")
            }
            running.append(export)
            let disk = try DiskLocator.waitForDisk(vdpaName: exportPlan.deviceName)
            logger.info("export \(exportPlan.id) ready: \(disk)")
            onReady(ExportReadiness(id: exportPlan.id, name: exportPlan.deviceName, device: disk,
                                    sizeBytes: export.config.capacitySectors * 512))
        }

        var received: Int32 = 0
        sigwait(&signals, &received)
        logger.info("signal \(received): shutting down")
        return 0
    }

    /// Unbinds from vdpa (the kernel flushes and waits for in-flight I/O, which the iothread
    /// keeps serving), then stops serving and destroys the VDUSE device.
    static func teardown(_ export: VDUSEBlockExport, control: VDUSEControl, logger: Logger) {
        do {
            try VDPANetlink.removeDevice(name: export.plan.deviceName)
        } catch {
            logger.error("vdpa: cannot remove device '\(export.plan.deviceName)': \(error.reason)")
        }
        destroy(export, control: control, logger: logger)
    }

    static func destroy(_ export: VDUSEBlockExport, control: VDUSEControl, logger: Logger) {
        try? export.iothread.run { export.detach() }
        // The kernel may hold the device for a moment after the last close.
        for attempt in 0..<50 {
            do {
                try control.destroyDevice(name: export.plan.deviceName)
                return
            } catch where error.errno == EBUSY && attempt < 49 {
                usleep(20_000)
            } catch {
                logger.error("cannot destroy vduse device '\(export.plan.deviceName)': \(error.reason)")
                return
            }
        }
    }
}

/// Finds the disk that virtio_blk made for a vdpa device.
enum DiskLocator {
    /// Waits (bounded) for /sys/bus/vdpa/devices/NAME/virtio*/block/vdX and its /dev node.
    static func waitForDisk(vdpaName: String, timeout: TimeInterval = 10) throws -> String {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let deadline = Date().addingTimeInterval(timeout)
        let fm = FileManager.default
        while Date() < deadline {
            if let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
               let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first {
                let node = "/dev/\(disk)"
                if fm.fileExists(atPath: node) { return node }
            }
            usleep(10_000)
        }
        let driver = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map { ($0 as NSString).lastPathComponent }
        if driver == "vhost_vdpa" {
            throw ServeError("vdpa device '\(vdpaName)' was bound to vhost_vdpa, not virtio_vdpa: unload vhost_vdpa (modprobe -r vhost_vdpa) to get a /dev/vdX")
        }
        throw ServeError("no disk appeared for vdpa device '\(vdpaName)' within \(Int(timeout)) s (driver: \(driver ?? "none"); is virtio_vdpa loaded?)")
    }
}

/// Checks (and once tries to load) what the kernel needs: vduse, vdpa, virtio_vdpa, virtio_blk.
enum KernelSupport {
    static let modules = ["vduse", "virtio_vdpa", "virtio_blk"]

    static func ensureVDUSE(logger: Logger) throws {
        if FileManager.default.fileExists(atPath: VDUSEControl.path) && VDPANetlink.managementDeviceExists {
            return
        }
        logger.info("loading kernel modules: \(modules.joined(separator: " "))")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/sbin/modprobe")
        p.arguments = ["-a"] + modules
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        if (try? p.run()) != nil { p.waitUntilExit() }
        guard FileManager.default.fileExists(atPath: VDUSEControl.path) else {
            throw ServeError("this kernel has no VDUSE: \(VDUSEControl.path) is missing and 'modprobe vduse' failed (the kernel needs CONFIG_VDPA_USER and CONFIG_VIRTIO_VDPA; on such a host, try the test bed demo: see README)")
        }
        guard VDPANetlink.managementDeviceExists else {
            throw ServeError("the vdpa management device 'vduse' is not registered (vdpa netlink family missing?)")
        }
    }
}
