import CVDUSE
import Foundation
import Glibc
import Logging

/// Runs exports until SIGINT/SIGTERM, then deletes them all (the kernel's order: vdpa DEV_DEL,
/// close, VDUSE_DESTROY_DEV) and returns 0. A failure while creating undoes what was created.
public enum ExportServer {
    public static func run(_ plan: ServePlan, logger: Logger,
                           onReady: (ExportStatus) -> Void = { _ in }) throws -> Int32 {
        // Signals are taken by sigwait on this thread only; block them before any thread starts.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let manager = try ExportManager(iothreads: plan.iothreads, logger: logger)
        defer { manager.shutdown() }
        for export in plan.exports {
            onReady(try manager.add(export))
        }
        var received: Int32 = 0
        sigwait(&signals, &received)
        logger.info("signal \(received): shutting down")
        return 0
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

extension DiskLocator {
    /// The disk of a vdpa device now, if any (no waiting).
    static func currentDisk(vdpaName: String) -> String? {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let fm = FileManager.default
        guard let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
              let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first else { return nil }
        return "/dev/\(disk)"
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
