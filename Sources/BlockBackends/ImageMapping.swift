import CVDUSE
import Glibc

/// A memory-backed image mapped shared, so that an inline transfer is a copy instead of a
/// preadv/pwritev (DataPathTuning's `mmap-image`). Sized at open: transfers beyond it (after a
/// resize) take the syscall path.
package final class ImageMapping {
    private let base: UnsafeMutableRawPointer
    private let length: UInt64

    package init?(fd: Int32, length: UInt64, writable: Bool) {
        guard length > 0, length <= UInt64(Int.max),
              let p = mmap(nil, Int(length), PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0),
              p != MAP_FAILED else { return nil }
        base = p
        self.length = length
    }

    deinit { munmap(base, Int(length)) }

    /// Copies the whole transfer if it lies inside the mapping; false (nothing copied) otherwise.
    /// Plain 8-byte copies, not memcpy (see cvduse_copy).
    package func transfer(write: Bool, iov: UnsafeMutableBufferPointer<iovec>, offset: UInt64, total: Int) -> Bool {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(total))
        guard !overflow, end <= length, iov.reduce(0, { $0 + $1.iov_len }) == total else { return false }
        var at = base + Int(offset)
        for piece in iov {
            guard let p = piece.iov_base else { return false }
            if write { cvduse_copy(at, p, piece.iov_len) } else { cvduse_copy(p, at, piece.iov_len) }
            at += piece.iov_len
        }
        return true
    }
}
