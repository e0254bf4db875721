import Errors

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
public struct OptionError: HasExitStatus, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    /// Bad options are bad input.
    public var exitStatus: ExitStatus { .invalidOptions }
    public init(_ message: String) { description = message }
}

/// Which syntax a value came from: QEMU's messages differ (keyval vs QMP/JSON).
public enum OptionSyntax: Sendable {
    case keyval
    case json
}

extension OptionValue {
    /// Compact JSON text: numbers exactly as they were written, strings escaped as JSON needs.
    /// Object members keep their order. The QMP socket speaks through this both ways.
    public var jsonText: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case let .string(s): Self.writeString(s, to: &out)
        case let .bool(b): out += b ? "true" : "false"
        case let .number(n): out += n
        case .null: out += "null"
        case let .list(items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                item.write(to: &out)
            }
            out += "]"
        case let .object(members):
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += ", " }
                Self.writeString(member.key, to: &out)
                out += ": "
                member.value.write(to: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// An integer as a JSON number.
    public static func integer<T: BinaryInteger>(_ value: T) -> OptionValue { .number(String(value)) }
}
