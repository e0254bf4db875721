import Testing
@testable import Core
@testable import Virtio
@testable import BlockBackends
@testable import Kernel
@testable import QAPI
@testable import QMP
@testable import Provisioning
@testable import Server
@testable import Wire

@Test func planDefaultsMatchQEMU() {
    let plan = ExportPlan(id: "e0", deviceName: "vduse0", backend: BackendSpec(kind: .file(path: "/x")))
    #expect(plan.numQueues == 1)
    #expect(plan.queueSize == 256)
    #expect(plan.logicalBlockSize == 512)
    #expect(plan.writable == false)
}
