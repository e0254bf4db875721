import CVDUSE
import Foundation
import Glibc
import Logging
import Testing
import TestSupport
import VirtioDriverSim
@testable import BlockBackends
@testable import Core
@testable import Kernel
@testable import QAPI
@testable import Virtio

/// The export's handling of the kernel's control messages, driven through a fake VDUSE device on
/// a loop the test thread owns: no VM, no kernel module.
final class ExportHarness {
    let loop: IOThread
    let driver: VirtqueueDriver
    let device: FakeVDUSEDevice
    let backend: HeldBackend
    let export: VDUSEBlockExport

    init(queueSize: UInt16 = 16, failKickSetup: Bool = false) throws {
        loop = try IOThread(name: "control-plane-test")
        loop.adoptCurrentThread()
        driver = VirtqueueDriver(size: queueSize)
        device = FakeVDUSEDevice(driver: driver)
        device.failKickSetup = failKickSetup
        backend = HeldBackend(size: 1 << 20)
        let plan = ExportPlan(id: "e0", deviceName: "fake", backend: BackendSpec(kind: .null(size: 1 << 20)),
                              writable: true, numQueues: 1, queueSize: queueSize)
        export = VDUSEBlockExport(plan: plan, device: device, backend: backend, iothread: loop, logger: Logger(label: "test"))
        try export.attach()
    }

    /// Runs the loop until nothing is ready.
    func settle() { while loop.poll(timeoutMs: 0) > 0 {} }

    func driverOK() {
        device.setStatus(1 | 2 | 8)      // ACKNOWLEDGE | DRIVER | FEATURES_OK
        device.setStatus(1 | 2 | 8 | 4)  // … | DRIVER_OK
        settle()
    }

    /// Offers `count` write requests and kicks.
    @discardableResult
    func offerWrites(_ count: Int) -> [VirtqueueDriver.Request] {
        let requests = (0..<count).map { i in
            driver.blockRequest(type: 1, sector: UInt64(i) * 8, dataLength: 4096, deviceWritesData: false, fill: 1)
        }
        for r in requests { driver.offer(r.head) }
        device.kick()
        settle()
        return requests
    }

    var lastReply: vduse_dev_response? { device.replies.last }
}

@Suite struct ControlPlaneTests {
    @Test func driverOKStartsTheQueueAndRequestsReachTheBackend() throws {
        let h = try ExportHarness()
        h.driverOK()
        #expect(h.device.replies.count == 2 && h.device.replies.allSatisfy { $0.result == UInt32(VDUSE_REQ_RESULT_OK) })
        #expect(h.export.queues.count == 1 && h.device.kickFDs[0] != nil)
        h.offerWrites(3)
        #expect(h.backend.queues.first?.inFlight == 3)
    }

    @Test func featuresWithoutVersion1AreRefused() throws {
        let h = try ExportHarness()
        h.device.features = VirtioBlockConfig.Feature.accessPlatform
        h.device.setStatus(1 | 2 | 8)
        h.settle()
        #expect(h.lastReply?.result == UInt32(VDUSE_REQ_RESULT_FAILED))
    }

    @Test func getQueueStateReportsTheNextAvailIndex() throws {
        let h = try ExportHarness()
        h.driverOK()
        h.offerWrites(5)
        h.device.getQueueState(0)
        h.settle()
        #expect(h.lastReply?.vq_state.split.avail_index == 5)
    }

    /// Defect 2: UPDATE_IOTLB used to abandon in-flight requests and restart the queue at index 0.
    @Test func updateIOTLBReturnsInFlightRequestsAndKeepsTheQueuePosition() throws {
        let h = try ExportHarness()
        h.driverOK()
        let first = h.offerWrites(3)
        h.device.updateIOTLB(first: 0, last: .max)
        h.settle()
        #expect(h.lastReply?.result == UInt32(VDUSE_REQ_RESULT_OK))
        let used = h.driver.takeUsed()
        #expect(Set(used.map(\.id)) == Set(first.map { UInt32($0.head) }), "in-flight requests are answered")
        #expect(first.allSatisfy { h.driver.status(of: $0) == 0 })
        let later = h.offerWrites(1)
        #expect(h.backend.queues.last?.submitted.suffix(1) == [later[0].head], "the next request is the new one, not a stale head")
        #expect(h.backend.queues.last?.submitted.count == 4)
    }

    @Test func resetWithRequestsInFlightAnswersThemAndStopsServing() throws {
        let h = try ExportHarness()
        h.driverOK()
        h.offerWrites(4)
        h.device.setStatus(0)
        h.settle()
        #expect(h.lastReply?.result == UInt32(VDUSE_REQ_RESULT_OK))
        #expect(h.export.queues.isEmpty)
        #expect(h.backend.queues.allSatisfy { $0.inFlight == 0 && $0.closed })
        #expect(h.device.kickFDs.isEmpty)
        // And the driver can start again after the reset.
        h.driverOK()
        #expect(h.export.queues.count == 1)
    }

    /// Defect 6: a queue whose start fails half way must leave nothing watching the loop.
    @Test func aQueueThatFailsToStartLeavesNoHandlerBehind() throws {
        let h = try ExportHarness(failKickSetup: true)
        let before = h.loop.watchedCount
        h.driverOK()
        #expect(h.export.queues.isEmpty)
        #expect(h.loop.watchedCount == before)
        #expect(h.backend.queues.allSatisfy { $0.closed })
    }

    @Test func detachAnswersWhatIsInFlight() throws {
        let h = try ExportHarness()
        h.driverOK()
        let requests = h.offerWrites(2)
        h.export.detach()
        #expect(Set(h.driver.takeUsed().map(\.id)) == Set(requests.map { UInt32($0.head) }))
        #expect(h.loop.watchedCount == 0)
    }
}
