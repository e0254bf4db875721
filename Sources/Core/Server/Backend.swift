import CVDUSE
import Glibc

/// The storage behind an export: a raw image in a regular file or a block device, or QEMU's
/// `null-co` (zeros, writes dropped). Owns the file descriptor.
final class Backend {
    enum Kind {
        case regularFile
        case blockDevice
        case null
    }

    let kind: Kind
    /// -1 for the null backend.
    let fd: Int32
    let size: UInt64
    let path: String?
    /// The image lives in memory (tmpfs, ramfs): a transfer is a copy that never waits for a
    /// device, so small ones are done inline on the iothread instead of via io_uring's workers.
    let memoryBacked: Bool

    /// Opens the backend the way the export needs it: read-only unless `writable`, O_DIRECT for
    /// `cache.direct=on`, O_DSYNC for writethrough (every write is stable when it completes).
    init(spec: BackendSpec, writable: Bool, writethrough: Bool) throws(SystemError) {
        switch spec.kind {
        case let .null(size):
            kind = .null
            fd = -1
            self.size = size
            path = nil
            memoryBacked = false
        case let .file(path):
            var flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC
            if spec.direct { flags |= cvduse_o_direct }
            if writethrough && writable { flags |= O_DSYNC }
            let fd = try sys("open(\(path))") { open(path, flags) }
            var st = stat()
            do throws(SystemError) {
                try sys("fstat") { fstat(fd, &st) }
                if st.st_mode & S_IFMT == S_IFBLK {
                    var bytes: UInt64 = 0
                    try negErrno("BLKGETSIZE64", cvduse_ioctl(fd, CVDUSE_BLKGETSIZE64, &bytes))
                    kind = .blockDevice
                    size = bytes
                } else if st.st_mode & S_IFMT == S_IFREG {
                    kind = .regularFile
                    size = UInt64(st.st_size)
                } else {
                    throw SystemError("open(\(path)): not a regular file or block device", errno: EINVAL)
                }
            } catch {
                close(fd)
                throw error
            }
            self.fd = fd
            self.path = path
            var fs = statfs()
            let tmpfsMagic = 0x0102_1994, ramfsMagic = 0x8584_58f6
            memoryBacked = kind == .regularFile && !spec.direct && fstatfs(fd, &fs) == 0
                && (Int(fs.f_type) == tmpfsMagic || Int(fs.f_type) == ramfsMagic)
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Sets the image size (regular files only; QEMU's block_resize on a file node).
    func resize(to bytes: UInt64) throws(SystemError) {
        guard kind == .regularFile else { throw SystemError("resize: only image files can be resized", errno: ENOTSUP) }
        try sys("ftruncate") { ftruncate(fd, off_t(bytes)) }
    }

    /// Completes a transfer that io_uring returned short, synchronously. Returns the status.
    func finishTransfer(write: Bool, iov: UnsafeMutablePointer<iovec>, count: Int, offset: UInt64,
                        done: Int, total: Int) -> BlockStatus {
        var done = done
        // Skip the pieces already transferred.
        var index = 0
        var skip = done
        while index < count && skip >= iov[index].iov_len {
            skip -= iov[index].iov_len
            index += 1
        }
        while done < total && index < count {
            let base = iov[index].iov_base! + skip
            let len = iov[index].iov_len - skip
            let r = write ? pwrite(fd, base, len, off_t(offset) + off_t(done))
                          : pread(fd, base, len, off_t(offset) + off_t(done))
            if r < 0 {
                if errno == EINTR { continue }
                return .ioError
            }
            if r == 0 {
                // End of file on a read: the image shrank under us.
                return .ioError
            }
            done += r
            skip += r
            if skip == iov[index].iov_len {
                index += 1
                skip = 0
            }
        }
        return done == total ? .ok : .ioError
    }

    /// Discard / write-zeroes on a block device (ioctls; synchronous, rare).
    func blockDeviceRange(discard: Bool, offset: UInt64, length: UInt64) -> BlockStatus {
        var range: (UInt64, UInt64) = (offset, length)
        let r = cvduse_ioctl(fd, discard ? CVDUSE_BLKDISCARD : CVDUSE_BLKZEROOUT, &range)
        return r < 0 ? .ioError : .ok
    }
}
