/// An option tree as QEMU's QAPI visitors see it, from either syntax:
/// keyval (`type=vduse-blk,id=e0,iothread.0=a`) gives only strings, objects and lists;
/// JSON gives typed scalars. Conversions to the QAPI types, with QEMU's messages, are in
/// `OptionReader`.
public indirect enum OptionValue: Equatable, Sendable {
    case string(String)
    case bool(Bool)
    /// A JSON number, kept as written so integer range and sign are judged exactly.
    case number(String)
    case null
    case list([OptionValue])
    case object([(key: String, value: OptionValue)])

    public static func == (a: OptionValue, b: OptionValue) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): x == y
        case let (.bool(x), .bool(y)): x == y
        case let (.number(x), .number(y)): x == y
        case (.null, .null): true
        case let (.list(x), .list(y)): x == y
        case let (.object(x), .object(y)): x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: false
        }
    }
}

/// An option error, carrying QEMU's exact message.
public struct OptionError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Which syntax a value came from: QEMU's messages differ (keyval vs QMP/JSON).
public enum OptionSyntax: Sendable {
    case keyval
    case json
}
