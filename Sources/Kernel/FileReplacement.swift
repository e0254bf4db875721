import Foundation
import Glibc

/// Replacing a file so that a crash leaves the old or the new contents, never half of them: a
/// temporary file beside it, written and fsynced, then renamed over it.
package enum FileReplacement {
    package enum Failure: Error {
        /// The temporary file could not be created.
        case create(SystemError)
        /// Writing, syncing or renaming it failed (it is removed again).
        case write(SystemError)
    }

    package static func replace(_ path: String, temporary: String, mode: mode_t, with data: Data) throws(Failure) {
        let fd = try create(temporary, mode: mode)
        let ok = writeAll(fd.rawValue, data) && fsync(fd.rawValue) == 0
        let e = errno
        fd.close()
        guard ok, rename(temporary, path) == 0 else {
            let failure = SystemError(ok ? "rename" : "write", errno: ok ? errno : e)
            unlink(temporary)
            throw .write(failure)
        }
    }

    private static func create(_ path: String, mode: mode_t) throws(Failure) -> UniqueFD {
        do { return try UniqueFD(open: path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode) } catch { throw .create(error) }
    }
}
