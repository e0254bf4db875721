import CVDUSE
import Foundation
import Glibc
import Kernel
import Logging

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
