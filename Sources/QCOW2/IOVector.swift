import Glibc

/// The caller's buffers as one byte range, sliced by offset into iovecs for preadv/pwritev.
struct IOVector {
    let pieces: [iovec]
    let count: Int

    init(_ pieces: [iovec]) {
        self.pieces = pieces
        count = pieces.reduce(0) { $0 + $1.iov_len }
    }

    /// The iovecs covering bytes [offset, offset + length).
    func slice(_ offset: Int, _ length: Int) -> [iovec] {
        var out: [iovec] = []
        var skip = offset
        var left = length
        for p in pieces where left > 0 {
            if skip >= p.iov_len {
                skip -= p.iov_len
                continue
            }
            let n = min(p.iov_len - skip, left)
            out.append(iovec(iov_base: p.iov_base! + skip, iov_len: n))
            skip = 0
            left -= n
        }
        return out
    }

    func zero(_ offset: Int, _ length: Int) {
        for p in slice(offset, length) { memset(p.iov_base, 0, p.iov_len) }
    }

    /// Copies `length` bytes from `source` into the vector at `offset`.
    func copyIn(_ source: UnsafeRawPointer, _ offset: Int, _ length: Int) {
        var src = source
        for p in slice(offset, length) {
            memcpy(p.iov_base, src, p.iov_len)
            src += p.iov_len
        }
    }

    /// Copies `length` bytes of the vector at `offset` out to `dest`.
    func copyOut(_ dest: UnsafeMutableRawPointer, _ offset: Int, _ length: Int) {
        var dst = dest
        for p in slice(offset, length) {
            memcpy(dst, p.iov_base, p.iov_len)
            dst += p.iov_len
        }
    }
}
