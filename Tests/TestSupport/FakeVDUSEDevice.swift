import CVDUSE
import Glibc
import VirtioDriverSim
import Core
import Kernel
import Virtio

/// A VDUSE device in memory: the export under test reads the messages we queue, replies, asks
/// for queue info and maps driver memory, exactly through the protocol the real device serves.
package final class FakeVDUSEDevice: VDUSEDeviceChannel {
    package let name = "fake"
    private let ready = try! EventFD()
    package var fd: Int32 { ready.fd }
    package let driver: VirtqueueDriver
    private var requests: [vduse_dev_request] = []
    package private(set) var replies: [vduse_dev_response] = []
    package private(set) var kickFDs: [Int: Int32] = [:]
    package private(set) var interrupts = 0
    package var features = VirtioBlockConfig.Feature.version1 | VirtioBlockConfig.Feature.accessPlatform
        | VirtioBlockConfig.Feature.eventIndex
    package var failKickSetup = false
    private var nextID: UInt32 = 1

    package init(driver: VirtqueueDriver) { self.driver = driver }

    // MARK: the kernel's side

    package func send(_ fill: (inout vduse_dev_request) -> Void) {
        var r = vduse_dev_request()
        r.request_id = nextID
        nextID += 1
        fill(&r)
        requests.append(r)
        ready.signal()
    }

    package func setStatus(_ status: UInt8) { send { $0.type = UInt32(VDUSE_SET_STATUS.rawValue); $0.s.status = status } }
    package func getQueueState(_ index: UInt32) { send { $0.type = UInt32(VDUSE_GET_VQ_STATE.rawValue); $0.vq_state.index = index } }
    package func updateIOTLB(first: UInt64, last: UInt64) {
        send { $0.type = UInt32(VDUSE_UPDATE_IOTLB.rawValue); $0.iova.start = first; $0.iova.last = last }
    }

    /// The driver kicked queue `index`.
    package func kick(_ index: Int = 0) {
        var one: UInt64 = 1
        if let fd = kickFDs[index] { _ = write(fd, &one, 8) }
    }

    // MARK: VDUSEDeviceChannel

    package func readRequest() throws(SystemError) -> vduse_dev_request? {
        guard !requests.isEmpty else {
            ready.drain()
            return nil
        }
        return requests.removeFirst()
    }

    package func reply(_ response: vduse_dev_response) throws(SystemError) { replies.append(response) }

    package func queueInfo(index: Int) throws(SystemError) -> vduse_vq_info {
        var info = vduse_vq_info()
        info.index = UInt32(index)
        info.num = UInt32(driver.size)
        info.desc_addr = driver.descTable
        info.driver_addr = driver.availRing
        info.device_addr = driver.usedRing
        info.ready = 1
        return info
    }

    package func setKickFD(index: Int, fd: Int32) throws(SystemError) {
        if failKickSetup && fd >= 0 { throw SystemError("VDUSE_VQ_SETUP_KICKFD", errno: EINVAL) }
        kickFDs[index] = fd >= 0 ? fd : nil
    }

    package func injectInterrupt(queue: Int) throws(SystemError) { interrupts += 1 }
    package func negotiatedFeatures() throws(SystemError) -> UInt64 { features }
    package func updateConfig(offset: UInt32, bytes: [UInt8]) throws(SystemError) {}

    /// The whole driver memory as one IOTLB entry, mapped a second time (the kernel's view).
    package func mapRegion(containing iova: UInt64) -> MappedRegion? {
        let first = VirtqueueDriver.iovaBase, last = first + UInt64(driver.memorySize) - 1
        guard iova >= first && iova <= last else { return nil }
        guard let base = mmap(nil, driver.memorySize, PROT_READ | PROT_WRITE, MAP_SHARED, driver.backingFD, 0),
              base != MAP_FAILED else { return nil }
        return MappedRegion(first: first, last: last, base: base, length: driver.memorySize, readable: true, writable: true)
    }

    package func close() {}
}
