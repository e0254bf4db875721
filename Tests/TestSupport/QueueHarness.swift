import Foundation
import Glibc
import Logging
import VirtioDriverSim
import BlockBackends
import Core
import Kernel
import Virtio

/// One virtqueue server on the test's thread: an in-memory driver, a real image file and a real
/// io_uring, no kernel.
package final class QueueHarness {
    package let driver: VirtqueueDriver
    package let server: VirtqueueServer
    package let backend: FileBackend
    package let loop: IOThread
    package let imagePath: String
    package var interrupts = 0

    package init(size: UInt16 = 64, imageBytes: Int = 1 << 20, writable: Bool = true, logicalBlockSize: UInt32 = 512,
                 serial: String = "", eventIndex: Bool = true, directory: String = NSTemporaryDirectory()) throws {
        imagePath = directory + "/vq-\(UUID().uuidString).img"
        _ = FileManager.default.createFile(atPath: imagePath, contents: nil)
        truncate(imagePath, off_t(imageBytes))
        driver = VirtqueueDriver(size: size)
        backend = try FileBackend(path: imagePath, writable: writable, direct: false, writethrough: false)
        loop = try IOThread(name: "test")
        loop.adoptCurrentThread()
        let queue = try SplitVirtqueue(index: 0, addresses: driver.addresses, eventIndex: eventIndex, memory: driver.space)
        let geometry = BlockExportGeometry(capacitySectors: UInt64(imageBytes) / 512, logicalBlockSize: logicalBlockSize,
                                           writable: writable, serial: Array(serial.utf8))
        var counter = 0
        let counted = { counter += 1 }
        server = try VirtqueueServer(queue: queue, backend: backend, geometry: geometry, memory: driver.space,
                                     loop: loop, logger: Logger(label: "test"), interrupt: counted)
        _ = counter
        interruptCounter = { counter }
    }

    private var interruptCounter: () -> Int = { 0 }
    package var interruptCount: Int { interruptCounter() }

    deinit { unlink(imagePath) }

    /// Lets the server take what was offered and waits until `count` more used elements appear.
    @discardableResult
    package func run(expecting count: Int, timeoutMs: Int32 = 5000) -> [(id: UInt32, len: UInt32)] {
        server.processAvailable()
        var used = driver.takeUsed()
        let deadline = Deadline.after(seconds: Double(timeoutMs) / 1000)
        // poll's 0 is not always a timeout: an EINTR (io_uring task work interrupts epoll_wait)
        // counts as nothing too, and stopping there made these tests flaky under load.
        while used.count < count && !deadline.hasPassed {
            _ = loop.poll(timeoutMs: timeoutMs)
            used += driver.takeUsed()
        }
        return used
    }

    package func image() -> [UInt8] { Array(FileManager.default.contents(atPath: imagePath)!) }
}
