import Glibc

/// A page-aligned buffer of ours for one direct transfer, used when the kernel cannot do
/// O_DIRECT I/O on the guest's buffers themselves (it must pin them, and some kernels cannot pin
/// VDUSE's bounce pages: 6.12.118 fails such I/O on a block device with EFAULT, QEMU's server too).
/// Freed when the transfer's completion lets go of it.
final class StagingBuffer {
    let length: Int
    private let base: UnsafeMutableRawPointer
    /// The one iovec covering the buffer, for readv/writev.
    let iov: UnsafeMutableBufferPointer<iovec>

    init(length: Int) {
        self.length = length
        let rounded = max(4096, (length + 4095) & ~4095)
        base = UnsafeMutableRawPointer.allocate(byteCount: rounded, alignment: 4096)
        iov = .allocate(capacity: 1)
        iov[0] = iovec(iov_base: base, iov_len: length)
    }

    deinit {
        iov.deallocate()
        base.deallocate()
    }

    /// Copies the guest's pieces in (before a write).
    func gather(from pieces: UnsafeMutableBufferPointer<iovec>) {
        var at = 0
        for piece in pieces where at < length {
            let n = min(piece.iov_len, length - at)
            (base + at).copyMemory(from: piece.iov_base!, byteCount: n)
            at += n
        }
    }

    /// Copies the first `count` bytes out to the guest's pieces (after a read).
    func scatter(to pieces: UnsafeMutableBufferPointer<iovec>, count: Int) {
        var at = 0
        for piece in pieces where at < count {
            let n = min(piece.iov_len, count - at)
            piece.iov_base!.copyMemory(from: base + at, byteCount: n)
            at += n
        }
    }
}
