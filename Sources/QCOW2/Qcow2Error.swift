import Errors
import Glibc

/// Why an image cannot be opened or an operation failed. Every message names the file involved,
/// since with backing chains the failing file is often not the one the user gave.
public enum Qcow2Error: Error, Equatable, CustomStringConvertible {
    case io(path: String, operation: String, errno: Int32)
    case notQcow2(path: String)
    case truncated(path: String)
    case unsupported(path: String, what: String)
    case corrupt(path: String, what: String)
    case backingMissing(image: String, backing: String)
    case backingLoop(chain: [String])
    case outOfRange(offset: UInt64, length: UInt64, size: UInt64)
    case readOnly(path: String)

    /// The errno closest to the failure, for callers that speak errno.
    public var errno: Int32 {
        switch self {
        case let .io(_, _, err): err
        case .notQcow2, .truncated, .corrupt, .outOfRange, .backingLoop: EINVAL
        case .unsupported: ENOTSUP
        case .backingMissing: ENOENT
        case .readOnly: EROFS
        }
    }

    public var description: String {
        switch self {
        case let .io(path, operation, err):
            return "\(path): \(operation) failed: \(SystemError(operation, errno: err).reason)"
        case let .notQcow2(path):
            return "\(path): not a qcow2 image (bad magic)"
        case let .truncated(path):
            return "\(path): truncated qcow2 header"
        case let .unsupported(path, what):
            return "\(path): unsupported qcow2 feature: \(what)"
        case let .corrupt(path, what):
            return "\(path): corrupt qcow2 image: \(what)"
        case let .backingMissing(image, backing):
            return "\(image): backing file '\(backing)' not found"
        case let .backingLoop(chain):
            return "backing chain loop: \(chain.joined(separator: " -> "))"
        case let .outOfRange(offset, length, size):
            return "request at \(offset) of \(length) bytes is beyond the image size \(size)"
        case let .readOnly(path):
            return "\(path): image is open read-only"
        }
    }
}
