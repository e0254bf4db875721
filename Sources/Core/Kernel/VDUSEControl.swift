import CVDUSE
import Glibc

/// `/dev/vduse/control`: creates and destroys VDUSE devices (API version 0, as 6.1–6.12 offer).
final class VDUSEControl: Sendable {
    static let path = "/dev/vduse/control"
    let fd: Int32

    init() throws(SystemError) {
        fd = try sys("open(\(Self.path))") { open(Self.path, O_RDWR | O_CLOEXEC) }
        var version: UInt64 = 0
        do throws(SystemError) {
            try negErrno("VDUSE_SET_API_VERSION", cvduse_ioctl(fd, CVDUSE_SET_API_VERSION, &version))
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// VDUSE_CREATE_DEV for a virtio-blk device with `config` as its config space.
    func createBlockDevice(name: String, config: VirtioBlockConfig) throws(SystemError) {
        let bytes = config.bytes
        let r = bytes.withUnsafeBytes { b in
            cvduse_create_dev(fd, name, VirtioBlockConfig.virtioBlockDeviceID, config.features,
                              UInt32(config.numQueues), 4096, b.baseAddress, UInt32(b.count))
        }
        try negErrno("VDUSE_CREATE_DEV", r)
    }

    /// VDUSE_DESTROY_DEV. EBUSY while a vdpa device or an open fd still holds it.
    func destroyDevice(name: String) throws(SystemError) {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = name.utf8CString.withUnsafeBufferPointer { src in
            strncpy(&buffer, src.baseAddress!, 255)
        }
        try negErrno("VDUSE_DESTROY_DEV", cvduse_ioctl(fd, CVDUSE_DESTROY_DEV, &buffer))
    }
}
