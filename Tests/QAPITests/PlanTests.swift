import Testing
@testable import QAPI

@Test func planDefaultsMatchQEMU() {
    let plan = ExportPlan(id: "e0", deviceName: "vduse0", backend: BackendSpec(kind: .file(path: "/x")))
    #expect(plan.numQueues == 1)
    #expect(plan.queueSize == 256)
    #expect(plan.logicalBlockSize == 512)
    #expect(plan.writable == false)
}
