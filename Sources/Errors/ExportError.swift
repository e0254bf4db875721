import SystemPackage

/// How the command ends: each kind of failure has its status (docs/options.md and the man page's
/// EXIT STATUS list them; the man page's switch over this enum is exhaustive).
public enum ExitStatus: Int32, Sendable, CaseIterable {
    case success = 0
    /// Invalid options or input (QEMU's messages): bad values, names, images that cannot be
    /// opened or are not what they claim.
    case invalidOptions = 1
    /// The name is exported already with another image, or something is held by someone else
    /// (the image by another writer, QEMU's image locks; a device or socket another server has).
    case conflict = 3
    /// The kernel side or a system call failed: no VDUSE, device creation refused, no disk
    /// appeared, a network image that cannot be reached.
    case kernel = 4
    /// `del` or a shrinking `resize` refused: the disk is mounted, held or open.
    case inUse = 5
    /// `del`: no export of that name.
    case notFound = 6
    /// A job (commit, mirror) was cancelled by SIGINT or SIGTERM: the disk stays where it was.
    case cancelled = 130

    /// The status a failure ends the command with: an error that names its status (an
    /// `ExportError`, an option error) says its own; anything else is the kernel side.
    public static func of(_ error: any Error) -> ExitStatus {
        (error as? any HasExitStatus)?.exitStatus ?? .kernel
    }
}

/// An error that knows which exit status it ends the command with.
public protocol HasExitStatus: Error {
    var exitStatus: ExitStatus { get }
}

/// The one error the layers above the system calls throw: what failed, in the words QEMU uses
/// where it has words for it; the exit status it ends the command with; and what caused it
/// (a `SystemError` with the errno, an option or qcow2 error, or another `ExportError`).
public struct ExportError: HasExitStatus, CustomStringConvertible, Sendable {
    public var exitStatus: ExitStatus { code }
    public var code: ExitStatus
    /// The complete message.
    public var message: String
    /// What went wrong underneath, if something did.
    public var cause: (any Error)?

    public init(_ code: ExitStatus, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public init(_ message: String, code: ExitStatus = .kernel, cause: (any Error)? = nil) {
        self.init(code, message, cause: cause)
    }

    /// `message: reason`, where the reason is the errno text of `cause` (rendered here, once).
    public init(_ message: String, because cause: SystemError, code: ExitStatus = .kernel) {
        self.init(code, "\(message): \(cause.reason)", cause: cause)
    }

    public init(_ code: ExitStatus, _ message: String, because cause: SystemError) {
        self.init(message, because: cause, code: code)
    }

    /// The errno at the bottom of the cause chain, if a system call is the reason.
    public var errno: Errno? {
        var next: (any Error)? = cause
        while let error = next {
            switch error {
            case let e as SystemError: return e.errno
            case let e as ExportError: next = e.cause
            default: return nil
            }
        }
        return nil
    }

    public var description: String { message }
}
