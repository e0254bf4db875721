import Glibc
import Kernel

/// Image locking that QEMU understands: open-file-description (OFD) read locks on single bytes,
/// in QEMU's raw-posix layout, so that QEMU and vduse-export each see the other.
///
/// Byte 100 + i is held by whoever uses permission i; byte 200 + i by whoever does not allow
/// others permission i. A second user first takes its own bytes, then tests the other side:
/// a byte it needs under 200 + i, or one under 100 + i that it refuses to share, held by
/// another open file means a conflict. The locks go away with the fd (or the process).
package enum ImageLock {
    /// QEMU's permission bits, in its order (bit i ↔ byte offset + i).
    package enum Permission: Int, CaseIterable, Sendable {
        case consistentRead = 0, write, writeUnchanged, resize

        /// QEMU's names, as its messages print them.
        package var name: String {
            switch self {
            case .consistentRead: "consistent read"
            case .write: "write"
            case .writeUnchanged: "write unchanged"
            case .resize: "resize"
            }
        }
    }

    package static let permissionBase = 100
    package static let sharedBase = 200
    // <fcntl.h> defines these only under _GNU_SOURCE, which the Glibc module does not see.
    private static let getOFDLock: Int32 = 36, setOFDLock: Int32 = 37

    /// What an export needs (`used`) and what it refuses to share (`unshared`): a writer uses
    /// write and resize and shares neither; a reader shares everything but write; a reader with
    /// `force-share` shares everything.
    package static func permissions(writable: Bool, forceShare: Bool)
        -> (used: Set<Permission>, unshared: Set<Permission>) {
        if writable { return ([.consistentRead, .write, .resize], [.write, .resize]) }
        return ([.consistentRead], forceShare ? [] : [.write, .resize])
    }

    /// Takes the locks for an export of the image open as `fd`, or throws QEMU's message.
    /// `checkOthers: false` only for an image this process holds as a writer and is about to
    /// let go of (a live snapshot reopens it as the new overlay's backing): the conflict would be
    /// with ourselves, and no other user can hold more than a reader's lock beside our writer.
    package static func acquire(fd: Int32, path: String, writable: Bool, forceShare: Bool,
                                checkOthers: Bool = true) throws(ExportError) {
        let (used, unshared) = permissions(writable: writable, forceShare: forceShare)
        for p in used { try lock(fd, permissionBase + p.rawValue, path: path) }
        for p in unshared { try lock(fd, sharedBase + p.rawValue, path: path) }
        guard checkOthers else { return }
        for p in Permission.allCases where used.contains(p) && heldByOthers(fd, sharedBase + p.rawValue) {
            throw conflict("Failed to get \"\(p.name)\" lock", path: path)
        }
        for p in Permission.allCases where unshared.contains(p) && heldByOthers(fd, permissionBase + p.rawValue) {
            throw conflict("Failed to get shared \"\(p.name)\" lock", path: path)
        }
    }

    /// Gives up a reader's refusal to share write and resize (the image stays locked as read).
    package static func shareWrites(fd: Int32) {
        for p in [Permission.write, .resize] {
            var l = flock()
            l.l_type = Int16(F_UNLCK)
            l.l_whence = Int16(SEEK_SET)
            l.l_start = sharedBase + p.rawValue
            l.l_len = 1
            _ = fcntl(fd, setOFDLock, &l)
        }
    }

    private static func conflict(_ message: String, path: String) -> ExportError {
        ExportError("\(message)\nIs another process using the image [\(path)]?", code: .conflict,
                    cause: SystemError("fcntl(F_OFD_GETLK)", errno: EAGAIN))
    }

    private static func lock(_ fd: Int32, _ offset: Int, path: String) throws(ExportError) {
        var l = flock()
        l.l_type = Int16(F_RDLCK)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = offset
        l.l_len = 1
        if fcntl(fd, setOFDLock, &l) != 0 {
            let e = errno
            // File systems without lock support (some FUSE ones): QEMU warns and goes on too.
            if e == ENOLCK || e == EOPNOTSUPP || e == ENOSYS { return }
            throw ExportError("Failed to lock byte \(offset) of '\(path)'", because: SystemError("fcntl(F_OFD_SETLK)", errno: e),
                              code: .conflict)
        }
    }

    /// Whether an open file other than `fd` holds a lock on the byte (QEMU tests with a write lock).
    private static func heldByOthers(_ fd: Int32, _ offset: Int) -> Bool {
        var l = flock()
        l.l_type = Int16(F_WRLCK)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = offset
        l.l_len = 1
        guard fcntl(fd, getOFDLock, &l) == 0 else { return false }
        return l.l_type != Int16(F_UNLCK)
    }
}
