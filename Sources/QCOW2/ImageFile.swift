import CQcow2
import Glibc

/// One open file with whole-buffer positional I/O: short reads and writes are retried, EINTR is
/// retried, and reads past the end of the file yield zeros (a sparse or preallocated tail).
final class ImageFile {
    let path: String
    let fd: Int32
    let writable: Bool
    /// Sees every change and barrier (tests replay them to simulate crashes).
    var observer: ((FileEvent) -> Void)?
    /// The file's size as our own writes left it (the image is locked against other writers), so
    /// offsets can be checked against the end without a system call.
    private(set) var end: UInt64 = 0

    init(path: String, writable: Bool) throws {
        let fd = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw Qcow2Error.io(path: path, operation: "open", errno: errno) }
        self.path = path
        self.fd = fd
        self.writable = writable
        var st = stat()
        if fstat(fd, &st) == 0 { end = UInt64(st.st_size) }
    }

    func close() { _ = Glibc.close(fd) }

    func size() throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("fstat") }
        return UInt64(st.st_size)
    }

    func identity() throws -> FileIdentity {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("fstat") }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    func error(_ operation: String) -> Qcow2Error {
        .io(path: path, operation: operation, errno: errno)
    }

    /// Reads `count` bytes; bytes past the end of the file read as zeros.
    func read(count: Int, at offset: UInt64) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        try buf.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return buf
    }

    func read(into buf: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var iov = [iovec(iov_base: buf.baseAddress, iov_len: buf.count)]
        try readv(&iov, at: offset)
    }

    /// Scatter read; the iovecs are consumed.
    func readv(_ iov: inout [iovec], at offset: UInt64) throws {
        var pos = offset
        var first = 0
        while first < iov.count {
            let n = iov.withUnsafeBufferPointer { p in
                preadv(fd, p.baseAddress! + first, Int32(min(iov.count - first, 1024)), off_t(pos))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("read")
            }
            if n == 0 {
                // End of file: the rest reads as zeros.
                for i in first..<iov.count where iov[i].iov_len > 0 {
                    memset(iov[i].iov_base, 0, iov[i].iov_len)
                }
                return
            }
            pos += UInt64(n)
            advance(&iov, &first, by: n)
        }
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    func write(_ buf: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: buf.baseAddress), iov_len: buf.count)]
        try writev(&iov, at: offset)
    }

    /// Gather write; the iovecs are consumed.
    func writev(_ iov: inout [iovec], at offset: UInt64) throws {
        if let observer {
            var bytes: [UInt8] = []
            for p in iov { bytes += UnsafeRawBufferPointer(start: p.iov_base, count: p.iov_len) }
            observer(.write(offset: offset, bytes: bytes))
        }
        var pos = offset
        var first = 0
        defer { end = max(end, pos) }
        while first < iov.count {
            let n = iov.withUnsafeBufferPointer { p in
                pwritev(fd, p.baseAddress! + first, Int32(min(iov.count - first, 1024)), off_t(pos))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("write")
            }
            pos += UInt64(n)
            advance(&iov, &first, by: n)
        }
    }

    private func advance(_ iov: inout [iovec], _ first: inout Int, by count: Int) {
        var n = count
        while first < iov.count, n >= iov[first].iov_len {
            n -= iov[first].iov_len
            first += 1
        }
        if n > 0 {
            iov[first].iov_base = iov[first].iov_base! + n
            iov[first].iov_len -= n
        }
    }

    /// Grows the file to `size` bytes (zeros); never shrinks it.
    func extend(to size: UInt64) throws {
        guard try size > self.size() else { return }
        while ftruncate(fd, off_t(size)) != 0 {
            if errno != EINTR { throw error("ftruncate") }
        }
        end = size
    }

    func sync() throws {
        observer?(.sync)
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw error("fdatasync") }
        }
    }

    /// Gives freed space back to the file system; failure only costs space, so it is ignored.
    func punchHole(at offset: UInt64, length: Int) {
        observer?(.write(offset: offset, bytes: [UInt8](repeating: 0, count: length)))
        _ = cq_punch_hole(fd, Int64(offset), Int64(length))
    }
}

/// A change to the file or a durability barrier, in the order they were issued.
package enum FileEvent {
    case write(offset: UInt64, bytes: [UInt8])
    case sync
}

/// Device and inode: two paths name the same file exactly when these match.
struct FileIdentity: Hashable {
    let device: UInt64
    let inode: UInt64
}
