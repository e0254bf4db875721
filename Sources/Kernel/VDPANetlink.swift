import CVDPANetlink

/// The vdpa generic netlink family: binds a VDUSE device to the vdpa bus (DEV_NEW), where
/// virtio_vdpa + virtio_blk turn it into /dev/vdX, and unbinds it (DEV_DEL).
/// Both calls block while the kernel probes or removes the disk, which needs I/O served by
/// the iothreads: never call them from an iothread.
package enum VDPANetlink {
    package static let managementDevice = "vduse"

    package static func addDevice(name: String) throws(SystemError) {
        try negErrno("vdpa DEV_NEW", cvduse_vdpa_dev_new(managementDevice, name))
    }

    package static func removeDevice(name: String) throws(SystemError) {
        try negErrno("vdpa DEV_DEL", cvduse_vdpa_dev_del(name))
    }

    /// True when the `vduse` management device is registered on the vdpa bus.
    package static var managementDeviceExists: Bool {
        cvduse_vdpa_mgmtdev_get(managementDevice) == 0
    }
}
