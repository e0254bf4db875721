import Glibc
import Virtio

/// One guest request in flight to an NBD server: what it is, the bounce buffer it is carried
/// in (libnbd wants one contiguous buffer per command), and how many NBD commands (chunks of
/// at most the server's maximum) are still out. Kept across a reconnect so it can be sent again.
final class NBDCommand {
    unowned let queue: NBDBackendQueue
    let tag: UInt16
    var io: BlockIO = .flush
    /// NBD commands of this request not answered yet.
    var outstanding = 0
    /// errno of the first failed chunk, 0 if none.
    var failure: Int32 = 0
    /// Waiting for a connection (in the connection's retry list).
    var waiting = false
    /// The queue was closed: answers are dropped.
    var abandoned = false
    private(set) var bounce: UnsafeMutableRawPointer?
    private var capacity = 0

    init(queue: NBDBackendQueue, tag: UInt16) {
        self.queue = queue
        self.tag = tag
    }

    deinit { bounce?.deallocate() }

    /// A buffer of at least `length` bytes, kept for the next request of this tag.
    func buffer(_ length: Int) -> UnsafeMutableRawPointer {
        if capacity < length {
            bounce?.deallocate()
            capacity = max(length, 64 * 1024)
            bounce = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 4096)
        }
        return bounce!
    }

    /// Copies the guest's write buffers into the bounce buffer.
    func gather(_ iov: UnsafeMutableBufferPointer<iovec>, length: Int) -> UnsafeMutableRawPointer {
        let b = buffer(length)
        var at = 0
        for piece in iov where at < length {
            let n = min(piece.iov_len, length - at)
            (b + at).copyMemory(from: piece.iov_base!, byteCount: n)
            at += n
        }
        return b
    }

    /// Copies a finished read from the bounce buffer into the guest's buffers.
    func scatter(_ iov: UnsafeMutableBufferPointer<iovec>, length: Int) {
        guard let b = bounce else { return }
        var at = 0
        for piece in iov where at < length {
            let n = min(piece.iov_len, length - at)
            piece.iov_base!.copyMemory(from: b + at, byteCount: n)
            at += n
        }
    }
}
