import CVDUSE
import Glibc

/// `/dev/vduse/control`: creates and destroys VDUSE devices (API version 0, as 6.1–6.12 offer).
package final class VDUSEControl: Sendable {
    package static let path = "/dev/vduse/control"
    private let descriptor: UniqueFD
    private var fd: Int32 { descriptor.rawValue }

    package init() throws(SystemError) {
        descriptor = try UniqueFD(open: Self.path, O_RDWR)
        var version: UInt64 = 0
        try negErrno("VDUSE_SET_API_VERSION", cvduse_ioctl(descriptor.rawValue, CVDUSE_SET_API_VERSION, &version))
    }

    /// VDUSE_CREATE_DEV: a device of virtio type `deviceID` with `features` offered, `queues`
    /// virtqueues and `config` as its config space.
    package func createDevice(name: String, deviceID: UInt32, features: UInt64, queues: Int,
                              config: [UInt8]) throws(SystemError) {
        let r = config.withUnsafeBytes { b in
            cvduse_create_dev(fd, name, deviceID, features, UInt32(queues), 4096, b.baseAddress, UInt32(b.count))
        }
        try negErrno("VDUSE_CREATE_DEV", r)
    }

    /// VDUSE_DESTROY_DEV. EBUSY while a vdpa device or an open fd still holds it.
    package func destroyDevice(name: String) throws(SystemError) {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = name.utf8CString.withUnsafeBufferPointer { src in
            strncpy(&buffer, src.baseAddress!, 255)
        }
        try negErrno("VDUSE_DESTROY_DEV", cvduse_ioctl(fd, CVDUSE_DESTROY_DEV, &buffer))
    }
}
