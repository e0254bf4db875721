import Glibc
import SystemPackage

/// A failed system call or ioctl: the call's name and the errno it returned.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    public let call: String
    public let errno: Errno

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = Errno(rawValue: errno)
    }

    /// The errno text alone, e.g. "Device or resource busy".
    public var reason: String { String(cString: strerror(errno.rawValue)) }
    public var description: String { "\(call): \(reason)" }
}
