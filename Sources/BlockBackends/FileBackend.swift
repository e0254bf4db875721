import CVDUSE
import Glibc
import Kernel
import Virtio

/// A raw image in a regular file or a block device, served through one io_uring per queue.
package final class FileBackend: BlockBackend {
    package enum Kind: Sendable { case regularFile, blockDevice }

    package let kind: Kind
    package let path: String
    private let descriptor: UniqueFD
    package var fd: Int32 { descriptor.rawValue }
    package private(set) var size: UInt64
    /// The image lives in memory (tmpfs, ramfs): a transfer is a copy that never waits for a
    /// device, so small ones are done inline on the iothread instead of via io_uring's workers.
    package let memoryBacked: Bool
    /// Opened with O_DIRECT (`cache.direct=on`).
    package let direct: Bool

    /// Opens the image the way the export needs it: read-only unless `writable`, O_DIRECT for
    /// `cache.direct=on`, O_DSYNC for writethrough (every write is stable when it completes).
    package init(path: String, writable: Bool, direct: Bool, writethrough: Bool) throws(SystemError) {
        var flags = writable ? O_RDWR : O_RDONLY
        if direct { flags |= cvduse_o_direct }
        if writethrough && writable { flags |= O_DSYNC }
        let descriptor = try UniqueFD(open: path, flags)
        var st = stat()
        try sys("fstat") { fstat(descriptor.rawValue, &st) }
        switch st.st_mode & S_IFMT {
        case S_IFBLK:
            var bytes: UInt64 = 0
            try negErrno("BLKGETSIZE64", cvduse_ioctl(descriptor.rawValue, CVDUSE_BLKGETSIZE64, &bytes))
            kind = .blockDevice
            size = bytes
        case S_IFREG:
            kind = .regularFile
            size = UInt64(st.st_size)
        default:
            throw SystemError("open(\(path)): not a regular file or block device", errno: EINVAL)
        }
        var fs = statfs()
        let tmpfsMagic = 0x0102_1994, ramfsMagic = 0x8584_58f6
        memoryBacked = kind == .regularFile && !direct && fstatfs(descriptor.rawValue, &fs) == 0
            && (Int(fs.f_type) == tmpfsMagic || Int(fs.f_type) == ramfsMagic)
        canPunchHoles = kind == .blockDevice || writable && Self.probePunchHole(descriptor.rawValue, at: size)
        self.descriptor = descriptor
        self.path = path
        self.direct = direct
    }

    /// The file system deallocates ranges (ext4, xfs, tmpfs do; vfat, exFAT, NFSv3, 9p do not).
    package let canPunchHoles: Bool

    /// Discard only where it works (a failed one is an I/O error in the guest); write-zeroes
    /// always, falling back to writing zeros.
    package var capabilities: BackendCapabilities {
        BackendCapabilities(discard: canPunchHoles, writeZeroes: true, resizable: kind == .regularFile)
    }

    /// Punches an empty range past the end: no data changes, but the file system says whether
    /// it can.
    private static func probePunchHole(_ fd: Int32, at end: UInt64) -> Bool {
        cvduse_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, end, 4096) == 0
    }

    /// Writes zeros over the range, for file systems that can neither zero nor punch in place.
    /// Synchronous (rare, at most 16 MiB per request).
    func writeZeros(offset: UInt64, length: UInt64) -> BlockStatus {
        let chunk = 1 << 20
        let zeros = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: chunk)
        var done: UInt64 = 0
        while done < length {
            let n = pwrite(fd, zeros, Int(min(UInt64(chunk), length - done)), off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .ioError }
            done += UInt64(n)
        }
        return .ok
    }

    package func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError)
        -> any BackendQueue {
        try FileBackendQueue(backend: self, ring: IOUring(entries: UInt32(depth)), depth: depth, loop: loop, sink: sink)
    }

    /// Sets the image size (regular files only; QEMU's block_resize on a file node).
    package func resize(to bytes: UInt64) throws(SystemError) {
        guard kind == .regularFile else { throw SystemError("resize: only image files can be resized", errno: ENOTSUP) }
        try sys("ftruncate") { ftruncate(fd, off_t(bytes)) }
        size = bytes
    }

    /// Transfers what io_uring left undone (a short read or write), or a whole inline transfer,
    /// synchronously. A whole transfer starts with one preadv/pwritev over every segment (a 1 MiB
    /// request can have 256); what that leaves is done segment by segment.
    func finishTransfer(write: Bool, iov: UnsafeMutableBufferPointer<iovec>, offset: UInt64, done: Int,
                        total: Int) -> BlockStatus {
        var done = done
        if done == 0 && iov.count > 1 && iov.count <= Self.maxVector && DataPathTuning.current.vectoredInline {
            let r = write ? pwritev(fd, iov.baseAddress, Int32(iov.count), off_t(offset))
                          : preadv(fd, iov.baseAddress, Int32(iov.count), off_t(offset))
            if r == total { return .ok }
            if r > 0 { done = r }
        }
        var index = 0
        var skip = done
        while index < iov.count && skip >= iov[index].iov_len {
            skip -= iov[index].iov_len
            index += 1
        }
        while done < total && index < iov.count {
            let base = iov[index].iov_base! + skip
            let len = iov[index].iov_len - skip
            let r = write ? pwrite(fd, base, len, off_t(offset) + off_t(done))
                          : pread(fd, base, len, off_t(offset) + off_t(done))
            if r < 0 {
                if errno == EINTR { continue }
                return .ioError
            }
            if r == 0 { return .ioError }  // end of file on a read: the image shrank under us
            done += r
            skip += r
            if skip == iov[index].iov_len {
                index += 1
                skip = 0
            }
        }
        return done == total ? .ok : .ioError
    }

    /// Linux's limit on segments per preadv/pwritev (UIO_MAXIOV).
    static let maxVector = 1024

    /// Discard / write-zeroes on a block device (ioctls; synchronous, rare).
    func blockDeviceRange(discard: Bool, offset: UInt64, length: UInt64) -> BlockStatus {
        var range: (UInt64, UInt64) = (offset, length)
        let r = cvduse_ioctl(fd, discard ? CVDUSE_BLKDISCARD : CVDUSE_BLKZEROOUT, &range)
        return r < 0 ? .ioError : .ok
    }
}
