import BlockBackends
import Core
import Testing

/// The data-path tuning knobs and the device policy built on them.
@Suite struct DevicePolicyTests {
    @Test func tuningParsesKnownKeysAndIgnoresTheRest() {
        let t = DataPathTuning(parsing: "poll-us=50,bounce-mb=8,irq-mask=2,inline-read-kb=256,vectored=0,bogus=1,x")
        #expect(t.pollMicroseconds == 50 && t.bounceMiB == 8 && t.irqMask == "2")
        #expect(t.inlineReadLimit == 256 * 1024 && !t.vectoredInline)
        #expect(DataPathTuning(parsing: "irq-mask=zz,bounce-mb=-3,poll-us=x") == DataPathTuning())
        #expect(DataPathTuning(parsing: "bounce-mb=99999").bounceMiB == 1024)
    }

    @Test func bounceBufferGrowsWithQueuesUpToTheKernelDefault() {
        let none = DataPathTuning()
        #expect(DevicePolicy.bounceBytes(numQueues: 1, tuning: none) == 16 << 20)
        #expect(DevicePolicy.bounceBytes(numQueues: 2, tuning: none) == 32 << 20)
        #expect(DevicePolicy.bounceBytes(numQueues: 16, tuning: none) == 64 << 20)
        #expect(DevicePolicy.bounceBytes(numQueues: 1, tuning: DataPathTuning(parsing: "bounce-mb=128")) == 128 << 20)
    }

    @Test func interruptsGoToTheFirstCPUOfTheDriversMask() {
        #expect(DevicePolicy.firstCPUMask(of: "3\n") == "1")
        #expect(DevicePolicy.firstCPUMask(of: "c") == "4")
        #expect(DevicePolicy.firstCPUMask(of: "ff,00000000") == "1,00000000")
        #expect(DevicePolicy.firstCPUMask(of: "00000000,00000100") == "100")
        #expect(DevicePolicy.firstCPUMask(of: "0") == nil)
        #expect(DevicePolicy.firstCPUMask(of: "") == nil)
        #expect(DevicePolicy.firstCPUMask(of: "xyz") == nil)
        #expect(DevicePolicy.interruptMask(driverMask: "3", tuning: DataPathTuning(parsing: "irq-mask=driver")) == nil)
        #expect(DevicePolicy.interruptMask(driverMask: "3", tuning: DataPathTuning(parsing: "irq-mask=2")) == "2")
        #expect(DevicePolicy.interruptMask(driverMask: "3", tuning: DataPathTuning()) == "1")
    }
}
