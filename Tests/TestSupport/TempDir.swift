import Foundation

/// A fresh directory under the system's temporary directory, removed with its last reference.
public final class TempDir {
    public let path: String

    public init(_ prefix: String = "vduse-export-test") throws {
        path = try Self.make(prefix)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// A fresh directory that stays (for fixtures whose files outlive the test's scope).
    public static func make(_ prefix: String = "vduse-export-test") throws -> String {
        var template = Array((NSTemporaryDirectory() + "\(prefix).XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp in \(NSTemporaryDirectory()): errno \(errno)")
        }
        return String(cString: made)
    }
}

/// A fixture that could not be set up: the test fails with this text.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
