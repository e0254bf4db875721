import CVDUSE
import Glibc

/// `/dev/vduse/NAME`: one VDUSE device's message channel and per-device ioctls.
/// The kernel allows a single opener; the fd is close-on-exec so no child keeps the device busy.
package final class VDUSEDevice {
    package let name: String
    private var descriptor: UniqueFD?
    /// -1 once closed (every ioctl then fails with EBADF).
    package var fd: Int32 { descriptor?.rawValue ?? -1 }

    package init(name: String) throws(SystemError) {
        self.name = name
        descriptor = try UniqueFD(open: "/dev/vduse/\(name)", O_RDWR | O_NONBLOCK)
    }

    /// Closes the device fd (needed before VDUSE_DESTROY_DEV succeeds).
    package func close() {
        descriptor = nil
    }

    package func setupQueue(index: Int, maxSize: UInt16) throws(SystemError) {
        var c = vduse_vq_config()
        c.index = UInt32(index)
        c.max_size = maxSize
        try negErrno("VDUSE_VQ_SETUP", cvduse_ioctl(fd, CVDUSE_VQ_SETUP, &c))
    }

    package func queueInfo(index: Int) throws(SystemError) -> vduse_vq_info {
        var info = vduse_vq_info()
        info.index = UInt32(index)
        try negErrno("VDUSE_VQ_GET_INFO", cvduse_ioctl(fd, CVDUSE_VQ_GET_INFO, &info))
        return info
    }

    /// Attaches (fd ≥ 0) or detaches (-1) the eventfd the kernel signals on driver kicks.
    package func setKickFD(index: Int, fd kick: Int32) throws(SystemError) {
        var e = vduse_vq_eventfd()
        e.index = UInt32(index)
        e.fd = kick
        try negErrno("VDUSE_VQ_SETUP_KICKFD", cvduse_ioctl(fd, CVDUSE_VQ_SETUP_KICKFD, &e))
    }

    package func injectInterrupt(queue: Int) throws(SystemError) {
        var index = UInt32(queue)
        try negErrno("VDUSE_VQ_INJECT_IRQ", cvduse_ioctl(fd, CVDUSE_VQ_INJECT_IRQ, &index))
    }

    /// The features the driver accepted.
    package func negotiatedFeatures() throws(SystemError) -> UInt64 {
        var features: UInt64 = 0
        try negErrno("VDUSE_DEV_GET_FEATURES", cvduse_ioctl(fd, CVDUSE_DEV_GET_FEATURES, &features))
        return features
    }

    /// Replaces part of the config space and tells the driver (resize).
    package func updateConfig(offset: UInt32, bytes: [UInt8]) throws(SystemError) {
        let r = bytes.withUnsafeBytes { cvduse_set_config(fd, offset, $0.baseAddress, UInt32($0.count)) }
        try negErrno("VDUSE_DEV_SET_CONFIG", r)
        try negErrno("VDUSE_DEV_INJECT_CONFIG_IRQ", cvduse_ioctl_value(fd, CVDUSE_DEV_INJECT_CONFIG_IRQ, 0))
    }

    /// Maps the IOTLB entry containing `iova` (VDUSE_IOTLB_GET_FD, then mmap at the entry's offset).
    package func mapRegion(containing iova: UInt64) -> MappedRegion? {
        var entry = vduse_iotlb_entry()
        entry.start = iova
        entry.last = iova
        let regionFD = cvduse_ioctl(fd, CVDUSE_IOTLB_GET_FD, &entry)
        guard regionFD >= 0 else { return nil }
        let owned = UniqueFD(taking: Int32(regionFD))
        guard entry.last >= entry.start, entry.last - entry.start < UInt64(Int.max) else { return nil }
        let length = Int(entry.last - entry.start + 1)
        let readable = entry.perm == UInt8(VDUSE_ACCESS_RO) || entry.perm == UInt8(VDUSE_ACCESS_RW)
        let writable = entry.perm == UInt8(VDUSE_ACCESS_WO) || entry.perm == UInt8(VDUSE_ACCESS_RW)
        var prot: Int32 = 0
        if readable { prot |= PROT_READ }
        if writable { prot |= PROT_WRITE }
        let base = mmap(nil, length, prot, MAP_SHARED, owned.rawValue, off_t(entry.offset))
        guard let base, base != MAP_FAILED else { return nil }
        return MappedRegion(first: entry.start, last: entry.last, base: base, length: length,
                            readable: readable, writable: writable)
    }

    /// Reads the next kernel request; nil when none is queued.
    package func readRequest() throws(SystemError) -> vduse_dev_request? {
        var request = vduse_dev_request()
        let size = MemoryLayout<vduse_dev_request>.size
        while true {
            let n = read(fd, &request, size)
            if n == size { return request }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return nil }
            throw SystemError("read(/dev/vduse/\(name))", errno: n < 0 ? errno : EIO)
        }
    }

    package func reply(_ response: vduse_dev_response) throws(SystemError) {
        var response = response
        let size = MemoryLayout<vduse_dev_response>.size
        try sys("write(/dev/vduse/\(name))") { write(fd, &response, size) }
    }
}

/// What an export needs of its VDUSE device: the message channel (`fd` is readable when the
/// kernel has queued a request) and the per-device ioctls. `VDUSEDevice` is the real one; tests
/// drive the export's message handling through a fake.
package protocol VDUSEDeviceChannel: AnyObject {
    var name: String { get }
    var fd: Int32 { get }
    func readRequest() throws(SystemError) -> vduse_dev_request?
    func reply(_ response: vduse_dev_response) throws(SystemError)
    func queueInfo(index: Int) throws(SystemError) -> vduse_vq_info
    func setKickFD(index: Int, fd: Int32) throws(SystemError)
    func injectInterrupt(queue: Int) throws(SystemError)
    func negotiatedFeatures() throws(SystemError) -> UInt64
    func updateConfig(offset: UInt32, bytes: [UInt8]) throws(SystemError)
    func mapRegion(containing iova: UInt64) -> MappedRegion?
    func close()
}

extension VDUSEDevice: VDUSEDeviceChannel {}
