import SystemPackage

/// The one error users see from the tool: what failed, in the words QEMU uses where it has
/// words for it, with a kind that decides the exit status and the system call underneath.
public struct ExportError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable, Equatable {
        /// Bad input: options, names, images that are not what they claim.
        case invalidArgument
        /// Something named does not exist (export id, node, device).
        case notFound
        /// Held by someone else (a lock, a device, a name).
        case busy
        /// The kernel or a system call refused.
        case system
        /// The kernel lacks what we need (no VDUSE, no vdpa).
        case unsupported
    }

    public var code: Code
    /// The complete message.
    public var message: String
    /// The failed call and its errno, when one is the reason.
    public var cause: SystemError?

    public init(_ message: String, code: Code = .system, cause: SystemError? = nil) {
        self.message = message
        self.code = code
        self.cause = cause
    }

    /// `message: reason`, with the errno text of `cause`.
    public init(_ message: String, because cause: SystemError, code: Code = .system) {
        self.init("\(message): \(cause.reason)", code: code, cause: cause)
    }

    public var errno: Errno? { cause?.errno }
    public var description: String { message }
}
