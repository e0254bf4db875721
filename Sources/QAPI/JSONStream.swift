/// Cuts a byte stream into top-level JSON values the way QEMU's monitor reads QMP: a value is
/// complete when its braces and brackets balance, with or without a newline after it, several
/// may arrive in one read and one may arrive over many. Only the structure is tracked here
/// (strings and their escapes, nesting); `JSONParser` judges each piece.
public struct JSONStream: Sendable {
    /// One piece of the stream.
    public enum Piece: Sendable, Equatable {
        /// The bytes of one top-level value (an object, or a stray scalar QMP will refuse).
        case value([UInt8])
        /// A value longer than the limit: the connection cannot find the next one reliably.
        case tooLong
    }

    /// Longest value accepted (QEMU bounds its input too).
    public let limit: Int
    private var current: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false
    /// A scalar (number, keyword) outside any object: ends at the first byte that cannot
    /// belong to it.
    private var inScalar = false

    public init(limit: Int) { self.limit = limit }

    /// Feeds bytes; returns the values they complete, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Piece] {
        var out: [Piece] = []
        for b in bytes {
            if inScalar && !Self.isScalarByte(b) {
                inScalar = false
                out.append(.value(current))
                current.removeAll(keepingCapacity: true)
            }
            if current.isEmpty && depth == 0 && !inString && Self.isSpace(b) { continue }
            current.append(b)
            if current.count > limit {
                reset()
                out.append(.tooLong)
                return out
            }
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") {
                    inString = false
                    if depth == 0 { emit(into: &out) }
                }
                continue
            }
            if inScalar { continue }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                // A closer with nothing open is a piece of its own (a parse error for the caller).
                depth -= 1
                if depth <= 0 { emit(into: &out) }
            default:
                if depth == 0 {
                    if Self.isScalarByte(b) { inScalar = true } else { emit(into: &out) }
                }
            }
        }
        return out
    }

    private mutating func emit(into out: inout [Piece]) {
        out.append(.value(current))
        reset()
    }

    private mutating func reset() {
        current.removeAll(keepingCapacity: true)
        depth = 0
        inString = false
        escaped = false
        inScalar = false
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0d }

    /// Letters, digits, sign, dot: what numbers and the keywords true/false/null are made of.
    private static func isScalarByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+")
            || b == UInt8(ascii: ".")
    }
}
