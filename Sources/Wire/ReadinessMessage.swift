import Foundation
import Kernel

/// One line on the readiness pipe, as JSON: `{"ready": STATUS}` for each export that is ready,
/// or `{"failed": {"status": N, "message": "..."}}` (N: the exit status the server ends with).
public enum ReadinessMessage: Codable, Equatable, Sendable {
    case ready(ExportStatus)
    case failed(Failure)

    public struct Failure: Codable, Equatable, Sendable {
        public var status: Int32
        public var message: String

        public init(status: Int32, message: String) {
            self.status = status
            self.message = message
        }
    }

    private enum CodingKeys: String, CodingKey { case ready, failed }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let status = try c.decodeIfPresent(ExportStatus.self, forKey: .ready) {
            self = .ready(status)
        } else {
            self = .failed(try c.decode(Failure.self, forKey: .failed))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case let .ready(status): try c.encode(status, forKey: .ready)
        case let .failed(failure): try c.encode(failure, forKey: .failed)
        }
    }

    /// Reads the next message from the pipe; nil at EOF, or for a line that is none (a server
    /// of another version). Past `deadline`: `ETIMEDOUT`.
    package static func read(_ lines: inout LineReader, until deadline: Deadline? = nil) throws(SystemError) -> ReadinessMessage? {
        guard let line = try lines.next(until: deadline) else { return nil }
        return try? JSONDecoder().decode(ReadinessMessage.self, from: Data(line))
    }
}
