import BlockBackends
import Core
import Glibc
import Testing

/// The data-path tuning knobs and the device policy built on them.
@Suite struct DevicePolicyTests {
    @Test func tuningParsesKnownKeysAndIgnoresTheRest() {
        let t = DataPathTuning(parsing: "poll-us=50,bounce-mb=8,irq-mask=2,inline-read-kb=256,vectored=0,bogus=1,x")
        #expect(t.pollMicroseconds == 50 && t.bounceMiB == 8 && t.irqMask == "2")
        #expect(t.inlineReadLimit == 256 * 1024 && !t.vectoredInline)
        #expect(DataPathTuning(parsing: "irq-mask=zz,bounce-mb=-3,poll-us=x") == DataPathTuning())
        #expect(DataPathTuning(parsing: "bounce-mb=99999").bounceMiB == 1024)
        #expect(DataPathTuning().nullFillStores && !DataPathTuning(parsing: "null-fill=memset").nullFillStores)
    }

    /// null-co reads zero exactly their buffers, whichever way they fill, at any alignment and length
    /// (the store loop has a head, a 32-byte body and a tail).
    @Test(arguments: [true, false]) func nullReadsZeroExactlyTheirBuffers(stores: Bool) {
        let backend = NullBackend(size: 1 << 20, fillWithStores: stores)
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 64)
        defer { memory.deallocate() }
        for (offset, length) in [(0, 4096), (1, 31), (3, 77), (7, 1), (5, 4099), (0, 32), (13, 0)] {
            memory.initializeMemory(as: UInt8.self, repeating: 0xa5, count: 8192)
            let iov = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 1)
            defer { iov.deallocate() }
            iov[0] = iovec(iov_base: memory + 64 + offset, iov_len: length)
            guard case .done(.ok) = backend.submit(.read(offset: 0, buffers: iov, length: length), tag: 0) else {
                Issue.record("null read did not finish at once with OK")
                return
            }
            let bytes = memory.assumingMemoryBound(to: UInt8.self)
            #expect((0..<(64 + offset)).allSatisfy { bytes[$0] == 0xa5 })
            #expect((64 + offset..<64 + offset + length).allSatisfy { bytes[$0] == 0 })
            #expect((64 + offset + length..<8192).allSatisfy { bytes[$0] == 0xa5 })
        }
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
