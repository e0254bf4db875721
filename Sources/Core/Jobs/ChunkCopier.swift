import BlockBackends
import Glibc
import Kernel
import Virtio

/// Copies chunks from one backend to another through queues of their own, one request at a
/// time, waiting for each in place (`quiesce`): a job's thread, or the export's iothread during
/// the final copy of a switch, uses it without running an event loop. All-zero chunks become
/// write-zeroes (a sparse target stays sparse).
final class ChunkCopier {
    private let source: any BackendQueue
    private let target: any BackendQueue
    private let sink = IdleSink()
    private let buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private let iov: UnsafeMutablePointer<iovec>
    private var completions: [Completion] = []

    /// Queues on `loop`, which must be the calling thread's (their fds are registered there,
    /// never served: every wait is `quiesce`).
    init(from source: any BlockBackend, to target: any BlockBackend, chunkSize: Int, loop: any EventLoop) throws(SystemError) {
        let s = try source.makeQueue(index: 0, depth: 1, loop: loop, sink: sink)
        do {
            self.target = try target.makeQueue(index: 0, depth: 1, loop: loop, sink: sink)
        } catch {
            s.close()
            throw error
        }
        self.source = s
        capacity = chunkSize
        buffer = .allocate(byteCount: chunkSize, alignment: 4096)
        iov = .allocate(capacity: 1)
    }

    deinit {
        source.close()
        target.close()
        buffer.deallocate()
        iov.deallocate()
    }

    private func run(_ queue: any BackendQueue, _ io: BlockIO) -> BlockStatus {
        if case let .done(status) = queue.submit(io, tag: 0) { return status }
        queue.commit()
        queue.quiesce()
        completions.removeAll(keepingCapacity: true)
        queue.reap(into: &completions)
        return completions.first?.status ?? .ioError
    }

    /// Copies [offset, offset + length) with one read; false on an I/O error of either side.
    /// What was read is written in pieces of `grain` bytes or more: runs of all-zero grains as
    /// write-zeroes (a sparse target stays sparse at the bitmap's granularity), the rest as data.
    func copy(offset: UInt64, length: Int, grain: Int) -> Bool {
        precondition(length <= capacity && grain > 0)
        iov.pointee = iovec(iov_base: buffer, iov_len: length)
        guard run(source, .read(offset: offset, buffers: UnsafeMutableBufferPointer(start: iov, count: 1), length: length)) == .ok else {
            return false
        }
        var start = 0
        while start < length {
            let zero = Self.allZero(buffer + start, min(grain, length - start))
            var end = min(start + grain, length)
            while end < length, Self.allZero(buffer + end, min(grain, length - end)) == zero { end = min(end + grain, length) }
            let piece = end - start
            let status: BlockStatus
            if zero {
                status = run(target, .writeZeroes(offset: offset + UInt64(start), length: UInt64(piece), unmap: true))
            } else {
                iov.pointee = iovec(iov_base: buffer + start, iov_len: piece)
                status = run(target, .write(offset: offset + UInt64(start), buffers: UnsafeMutableBufferPointer(start: iov, count: 1),
                                            length: piece))
            }
            guard status == .ok else { return false }
            start = end
        }
        return true
    }

    func flushTarget() -> Bool { run(target, .flush) == .ok }

    private static func allZero(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        let words = p.assumingMemoryBound(to: UInt64.self)
        for i in 0..<(n / 8) where words[i] != 0 { return false }
        let bytes = p.assumingMemoryBound(to: UInt8.self)
        for i in (n / 8 * 8)..<n where bytes[i] != 0 { return false }
        return true
    }
}
