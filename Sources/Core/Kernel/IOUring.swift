import CVDUSE
import Glibc

/// An io_uring owned by one virtqueue server. Completions signal `completions`, which the
/// iothread watches; each request carries a 64-bit tag (the descriptor head).
final class IOUring {
    private let ring: OpaquePointer
    let completions: EventFD
    private var prepared = 0
    private static let reapBatch = 64
    private let reapTags = UnsafeMutablePointer<UInt64>.allocate(capacity: reapBatch)
    private let reapResults = UnsafeMutablePointer<Int32>.allocate(capacity: reapBatch)

    init(entries: UInt32) throws(SystemError) {
        completions = try EventFD()
        var error: Int32 = 0
        guard let r = cvduse_ring_create(entries, completions.fd, &error) else {
            throw SystemError("io_uring_queue_init", errno: -error)
        }
        ring = r
    }

    deinit {
        cvduse_ring_destroy(ring)
        reapTags.deallocate()
        reapResults.deallocate()
    }

    enum Operation {
        case readv(fd: Int32, iov: UnsafePointer<iovec>, count: Int, offset: UInt64)
        case writev(fd: Int32, iov: UnsafePointer<iovec>, count: Int, offset: UInt64)
        case fdatasync(fd: Int32)
        case fallocate(fd: Int32, mode: Int32, offset: UInt64, length: UInt64)
    }

    /// Queues `op`; submits first when the submission queue is full.
    func prepare(_ op: Operation, tag: UInt64) throws(SystemError) {
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
            if r == 0 { prepared += 1; return }
            try submit()
        }
    }

    /// Hands everything prepared to the kernel.
    func submit() throws(SystemError) {
        guard prepared > 0 else { return }
        try negErrno("io_uring_submit", cvduse_ring_submit(ring))
        prepared = 0
    }

    /// Calls `body(tag, result)` for every completion available now.
    func reap(_ body: (UInt64, Int32) -> Void) {
        while true {
            let n = Int(cvduse_ring_reap(ring, reapTags, reapResults, UInt32(Self.reapBatch)))
            for i in 0..<n { body(reapTags[i], reapResults[i]) }
            if n < Self.reapBatch { return }
        }
    }

    /// Blocks for one completion (draining before the rings go away).
    func wait() throws(SystemError) -> (tag: UInt64, result: Int32) {
        var tag: UInt64 = 0
        var result: Int32 = 0
        try negErrno("io_uring_wait_cqe", cvduse_ring_wait(ring, &tag, &result))
        return (tag, result)
    }
}
