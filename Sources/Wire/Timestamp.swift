import Foundation

/// A moment, written in JSON as an RFC 3339 string in UTC ("2026-12-05T10:11:12Z"). Reads the
/// older form too (a number of Unix seconds), which records written by a server of an earlier
/// version still hold while it runs.
public struct Timestamp: Codable, Equatable, Sendable {
    public var secondsSince1970: Double

    public init(secondsSince1970: Double) { self.secondsSince1970 = secondsSince1970 }

    public static var now: Timestamp { Timestamp(secondsSince1970: Date().timeIntervalSince1970.rounded(.down)) }

    public var rfc3339: String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date(timeIntervalSince1970: secondsSince1970))
    }

    public init(rfc3339 text: String) throws {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: text) { secondsSince1970 = d.timeIntervalSince1970; return }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let d = f.date(from: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not an RFC 3339 time: \(text)"))
        }
        secondsSince1970 = d.timeIntervalSince1970
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let seconds = try? c.decode(Double.self) {
            self.init(secondsSince1970: seconds)
        } else {
            try self.init(rfc3339: c.decode(String.self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rfc3339)
    }
}
