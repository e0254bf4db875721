import CIOUring
import Glibc

/// An io_uring owned by one virtqueue server. Completions signal `completions`, which the
/// iothread watches; each request carries a 64-bit tag (the descriptor head).
package final class IOUring {
    private let ring: OpaquePointer
    package let completions: EventFD
    /// Entries prepared and not yet taken by the kernel: a failed or partial submit leaves some,
    /// and they go with the next `submit()` (the owner retries; see FileBackendQueue.commit).
    package var unsubmitted: Int { prepared.pointee }
    /// `unsubmitted`'s storage, behind a pointer: the ring is used by one queue on its iothread
    /// only, so a stored property's run-time exclusivity checks (two per request) guard nothing.
    private let prepared = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    /// io_uring_submit; replaceable so that tests can make it fail or fall short.
    private let submitCall: (OpaquePointer) -> Int32
    private static let reapBatch = 64
    private let reapTags = UnsafeMutablePointer<UInt64>.allocate(capacity: reapBatch)
    private let reapResults = UnsafeMutablePointer<Int32>.allocate(capacity: reapBatch)

    package init(entries: UInt32, submit: @escaping (OpaquePointer) -> Int32 = { cvduse_ring_submit($0) })
        throws(SystemError) {
        submitCall = submit
        prepared.initialize(to: 0)
        completions = try EventFD()
        var error: Int32 = 0
        guard let r = cvduse_ring_create(entries, completions.fd, &error) else {
            throw SystemError("io_uring_queue_init", errno: -error)
        }
        ring = r
    }

    deinit {
        cvduse_ring_destroy(ring)
        prepared.deallocate()
        reapTags.deallocate()
        reapResults.deallocate()
    }

    package enum Operation {
        case readv(fd: Int32, iov: UnsafePointer<iovec>, count: Int, offset: UInt64)
        case writev(fd: Int32, iov: UnsafePointer<iovec>, count: Int, offset: UInt64)
        case fdatasync(fd: Int32)
        case fallocate(fd: Int32, mode: Int32, offset: UInt64, length: UInt64)
    }

    /// Queues `op`; submits first when the submission queue is full.
    package func prepare(_ op: Operation, tag: UInt64) throws(SystemError) {
        while true {
            let r: Int32
            switch op {
            case let .readv(fd, iov, count, offset):
                r = cvduse_ring_prep_readv(ring, fd, iov, UInt32(count), offset, tag)
            case let .writev(fd, iov, count, offset):
                r = cvduse_ring_prep_writev(ring, fd, iov, UInt32(count), offset, tag)
            case let .fdatasync(fd):
                r = cvduse_ring_prep_fdatasync(ring, fd, tag)
            case let .fallocate(fd, mode, offset, length):
                r = cvduse_ring_prep_fallocate(ring, fd, mode, offset, length, tag)
            }
            if r == 0 { prepared.pointee += 1; return }
            try submit()
        }
    }

    /// Hands what is prepared to the kernel; returns how many it took. The rest stays counted
    /// in `unsubmitted` (EAGAIN/EBUSY, or a short count) for the next call.
    @discardableResult
    package func submit() throws(SystemError) -> Int {
        guard prepared.pointee > 0 else { return 0 }
        let taken = Int(try negErrno("io_uring_submit", submitCall(ring)))
        prepared.pointee -= min(taken, prepared.pointee)
        return taken
    }

    /// For tests: the raw submit, to wrap.
    package static func realSubmit(_ ring: OpaquePointer) -> Int32 { cvduse_ring_submit(ring) }

    /// Completions are waiting to be reaped (a look at the shared ring, no system call).
    package var hasCompletions: Bool { cvduse_ring_ready(ring) > 0 }

    /// Calls `body(tag, result)` for every completion available now.
    package func reap(_ body: (UInt64, Int32) -> Void) {
        while true {
            let n = Int(cvduse_ring_reap(ring, reapTags, reapResults, UInt32(Self.reapBatch)))
            for i in 0..<n { body(reapTags[i], reapResults[i]) }
            if n < Self.reapBatch { return }
        }
    }

    /// Blocks for one completion (draining before the rings go away).
    package func wait() throws(SystemError) -> (tag: UInt64, result: Int32) {
        var tag: UInt64 = 0
        var result: Int32 = 0
        try negErrno("io_uring_wait_cqe", cvduse_ring_wait(ring, &tag, &result))
        return (tag, result)
    }
}
