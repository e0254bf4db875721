@_exported import Errors
import Foundation
import Glibc

/// Runs a call that returns -1 and sets errno on failure, retrying EINTR.
@discardableResult
package func sys<T: BinaryInteger>(_ name: String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw SystemError(name, errno: e)
    }
}

/// Runs a C wrapper that returns a value or -errno (the CVDUSE convention).
@discardableResult
package func negErrno<T: SignedInteger>(_ name: String, _ r: T) throws(SystemError) -> T {
    if r < 0 { throw SystemError(name, errno: Int32(-r)) }
    return r
}

/// Writes all of `data` to `fd` (retrying short writes and EINTR); false when the peer is gone.
@discardableResult
package func writeAll(_ fd: Int32, _ data: Data) -> Bool {
    data.withUnsafeBytes { b in
        var off = 0
        while off < b.count {
            let n = write(fd, b.baseAddress! + off, b.count - off)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}
