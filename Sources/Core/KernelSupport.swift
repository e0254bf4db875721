import CVDUSE
import Foundation
import Glibc
import Kernel
import Logging

/// Finds the disk that virtio_blk made for a vdpa device.
package enum DiskLocator {
    /// Waits (bounded) for /sys/bus/vdpa/devices/NAME/virtio*/block/vdX and its /dev node.
    package static func waitForDisk(vdpaName: String, timeout: TimeInterval = 10) throws -> String {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let deadline = Deadline.after(seconds: timeout)
        let fm = FileManager.default
        while !deadline.hasPassed {
            if let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
               let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first {
                let node = "/dev/\(disk)"
                if fm.fileExists(atPath: node) { return node }
            }
            // Bound to another bus driver (vhost_vdpa): no disk will ever come.
            if let d = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map({ ($0 as NSString).lastPathComponent }),
               d != "virtio_vdpa" { break }
            usleep(10_000)
        }
        let driver = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map { ($0 as NSString).lastPathComponent }
        if driver == "vhost_vdpa" {
            throw ExportError("vdpa device '\(vdpaName)' was bound to vhost_vdpa, not virtio_vdpa: unload vhost_vdpa (modprobe -r vhost_vdpa) to get a /dev/vdX")
        }
        throw ExportError("no disk appeared for vdpa device '\(vdpaName)' within \(Int(timeout)) s (driver: \(driver ?? "none"); is virtio_vdpa loaded?)")
    }
}

extension DiskLocator {
    /// The disk of a vdpa device now, if any (no waiting).
    package static func currentDisk(vdpaName: String) -> String? {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let fm = FileManager.default
        guard let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
              let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first else { return nil }
        return "/dev/\(disk)"
    }
}

/// Checks (and once tries to load) what the kernel needs: vduse, vdpa, virtio_vdpa, virtio_blk.
package enum KernelSupport {
    package static let modules = ["vduse", "virtio_vdpa", "virtio_blk"]

    package static func ensureVDUSE(logger: Logger) throws {
        if FileManager.default.fileExists(atPath: VDUSEControl.path) && VDPANetlink.managementDeviceExists {
            return
        }
        logger.info("loading kernel modules: \(modules.joined(separator: " "))")
        _ = try? Subprocess.runQuietly("/sbin/modprobe", ["-a"] + modules)
        guard FileManager.default.fileExists(atPath: VDUSEControl.path) else {
            throw ExportError("this kernel has no VDUSE: \(VDUSEControl.path) is missing and 'modprobe vduse' failed (the kernel needs CONFIG_VDPA_USER and CONFIG_VIRTIO_VDPA; on such a host, try the test bed demo: see README)")
        }
        guard VDPANetlink.managementDeviceExists else {
            throw ExportError("the vdpa management device 'vduse' is not registered (vdpa netlink family missing?)")
        }
    }
}
