import Foundation
import Kernel
import Glibc

/// qemu-storage-daemon's `--pidfile`: a write lock on the file keeps a second daemon with the
/// same path out; the pid is written once the daemon runs; the file is removed at exit.
/// The lock is taken before anything is created, so a refused start leaves nothing behind.
public final class PidFile {
    public let path: String
    private var fd: Int32
    private var written = false

    /// Opens (creating it) and locks `path`; QEMU's messages when that fails. A relative path
    /// is made absolute first: a daemon changes to `/` once it runs.
    public init(path: String) throws {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        self.path = absolute
        while true {
            let fd = open(absolute, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw ExportError(.invalidOptions, "cannot create PID file: Could not create '\(path)'", because: SystemError("open", errno: errno))
            }
            var l = flock()
            l.l_type = Int16(F_WRLCK)
            l.l_whence = Int16(SEEK_SET)
            // An OFD lock: it conflicts with QEMU's POSIX lock, and closing some other
            // descriptor of the file does not drop it.
            if fcntl(fd, Self.setOFDLock, &l) != 0 {
                let e = errno
                close(fd)
                throw ExportError(.conflict, "cannot create PID file: Cannot lock pid file", because: SystemError("fcntl(F_OFD_SETLK)", errno: e))
            }
            // The file locked must still be the one at the path (another daemon may have
            // removed it at exit between our open and our lock): else start over.
            var opened = stat(), named = stat()
            if fstat(fd, &opened) == 0, stat(absolute, &named) == 0, opened.st_ino == named.st_ino, opened.st_dev == named.st_dev {
                self.fd = fd
                return
            }
            close(fd)
        }
    }

    private static let setOFDLock: Int32 = 37  // F_OFD_SETLK

    /// Writes this process's pid (called once the daemon runs).
    public func write() throws {
        let text = "\(getpid())\n"
        guard ftruncate(fd, 0) == 0, text.withCString({ Glibc.write(fd, $0, strlen($0)) }) == text.utf8.count else {
            throw ProvisioningError(.kernel, "cannot create PID file: Failed to write pid file")
        }
        written = true
    }

    /// Removes the file (still locked, so it is ours) and lets go of it.
    public func remove() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    deinit { remove() }
}
