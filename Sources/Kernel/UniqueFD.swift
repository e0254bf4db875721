import Glibc

/// The one owner of a file descriptor: closed exactly once, when the owner goes away or by
/// `close()`. Not copyable, so two owners of one fd cannot exist; others borrow `rawValue` for
/// the length of a call.
package struct UniqueFD: ~Copyable, Sendable {
    package let rawValue: Int32

    /// Takes ownership of `rawValue` (≥ 0).
    package init(taking rawValue: Int32) {
        precondition(rawValue >= 0, "UniqueFD of a negative fd")
        self.rawValue = rawValue
    }

    /// Opens `path`; the fd is close-on-exec.
    package init(open path: String, _ flags: Int32, mode: mode_t = 0) throws(SystemError) {
        rawValue = try sys("open(\(path))") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    deinit { Glibc.close(rawValue) }

    /// Closes now (same as letting the owner go; spelled out where the moment matters).
    package consuming func close() {}

    /// Gives up ownership without closing (the caller now owns the number).
    package consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }
}
