import Glibc
import BlockBackends
import Wire

/// Small fixtures several subjects share.
package enum Fixtures {
    /// A record of a stopped export named `name` (pid 0 unless given), as `add` writes one.
    package static func record(_ name: String, pid: Int32 = 0) -> ExportRecord {
        ExportRecord(name: name, id: "e", device: "", image: "/nonexistent.img", size: 1 << 20, queues: 1, serial: "",
                     readOnly: false, pid: pid, socket: nil)
    }

    /// Opens `path` and takes QEMU's image locks on it as one more process would (each open is a
    /// separate lock owner); the caller closes the fd, which drops the locks.
    package static func lockImage(_ path: String, writable: Bool, forceShare: Bool = false) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("open \(path): errno \(errno)") }
        do {
            try ImageLock.acquire(fd: fd, path: path, writable: writable, forceShare: forceShare)
        } catch {
            close(fd)  // as a failed export drops its backend: its locks go too
            throw error
        }
        return fd
    }
}
