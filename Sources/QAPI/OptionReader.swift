/// Reads the members of one QAPI struct from an option tree, the way QEMU's input visitors
/// do, with their messages. Members are looked up by name; `finish()` rejects the rest.
package struct OptionReader {
    package let syntax: OptionSyntax
    private let members: [(key: String, value: OptionValue)]
    private var used: Set<String> = []
    /// Prefix of nested member names in messages (e.g. "cache.").
    private let prefix: String

    package init(_ value: OptionValue, syntax: OptionSyntax, prefix: String = "", what: String = "") throws(OptionError) {
        guard case let .object(members) = value else {
            throw OptionError("Invalid parameter type for '\(prefix.isEmpty ? (what.isEmpty ? "null" : what) : String(prefix.dropLast()))', expected: object")
        }
        self.syntax = syntax
        self.members = members
        self.prefix = prefix
    }

    private func full(_ name: String) -> String { prefix + name }

    package mutating func raw(_ name: String) -> OptionValue? {
        used.insert(name)
        return members.first { $0.key == name }?.value
    }

    package var has: (String) -> Bool { { name in members.contains { $0.key == name } } }

    package mutating func string(_ name: String) throws(OptionError) -> String? {
        switch raw(name) {
        case nil: return nil
        case let .string(s)?: return s
        default: throw OptionError("Invalid parameter type for '\(full(name))', expected: string")
        }
    }

    package mutating func requiredString(_ name: String) throws(OptionError) -> String {
        guard let s = try string(name) else { throw OptionError("Parameter '\(full(name))' is missing") }
        return s
    }

    package mutating func bool(_ name: String) throws(OptionError) -> Bool? {
        switch raw(name) {
        case nil: return nil
        case let .bool(b)?: return b
        case let .string(s)? where syntax == .keyval:
            switch s {
            case "on", "yes", "true", "y": return true
            case "off", "no", "false", "n": return false
            default: throw OptionError("Parameter '\(full(name))' expects 'on' or 'off'")
            }
        default:
            if syntax == .keyval { throw OptionError("Parameter '\(full(name))' expects 'on' or 'off'") }
            throw OptionError("Invalid parameter type for '\(full(name))', expected: boolean")
        }
    }

    /// An unsigned integer no larger than `max`; `typeName` is QEMU's C name for the range error.
    package mutating func unsigned(_ name: String, max: UInt64, typeName: String) throws(OptionError) -> UInt64? {
        let value: UInt64
        switch raw(name) {
        case nil: return nil
        case let .string(s)? where syntax == .keyval:
            guard let v = Self.parseUnsigned(s) else { throw OptionError("Parameter '\(full(name))' expects integer") }
            value = v
        case let .number(n)? where syntax == .json:
            guard let v = Self.jsonUInt64(n) else { throw OptionError("Parameter '\(full(name))' expects uint64") }
            value = v
        default:
            if syntax == .keyval { throw OptionError("Parameter '\(full(name))' expects integer") }
            throw OptionError("Parameter '\(full(name))' expects uint64")
        }
        guard value <= max else { throw OptionError("Parameter '\(full(name))' expects \(typeName)") }
        return value
    }

    /// A signed 64-bit integer (QAPI `int`): a JSON number that is an integer in range, or
    /// keyval's decimal text; QEMU's messages otherwise.
    package mutating func signed(_ name: String) throws(OptionError) -> Int64? {
        switch raw(name) {
        case nil: return nil
        case let .number(n)? where syntax == .json:
            guard let v = Int64(n) else { throw OptionError("Invalid parameter type for '\(full(name))', expected: integer") }
            return v
        case let .string(s)? where syntax == .keyval:
            guard let v = Int64(s) else { throw OptionError("Parameter '\(full(name))' expects integer") }
            return v
        default:
            if syntax == .keyval { throw OptionError("Parameter '\(full(name))' expects integer") }
            throw OptionError("Invalid parameter type for '\(full(name))', expected: integer")
        }
    }

    /// QAPI `size`: keyval accepts suffixes (k, M, G, T, P, E; powers of 1024).
    package mutating func size(_ name: String) throws(OptionError) -> UInt64? {
        switch raw(name) {
        case nil: return nil
        case let .string(s)? where syntax == .keyval:
            guard let v = Self.parseSize(s) else { throw OptionError("Parameter '\(full(name))' expects size") }
            return v
        case let .number(n)? where syntax == .json:
            guard let v = Self.jsonUInt64(n) else { throw OptionError("Parameter '\(full(name))' expects uint64") }
            return v
        default:
            if syntax == .keyval { throw OptionError("Parameter '\(full(name))' expects size") }
            throw OptionError("Parameter '\(full(name))' expects uint64")
        }
    }

    package mutating func enumeration(_ name: String, _ allowed: [String]) throws(OptionError) -> String? {
        guard let s = try string(name) else { return nil }
        guard allowed.contains(s) else { throw OptionError("Parameter '\(full(name))' does not accept value '\(s)'") }
        return s
    }

    /// Rejects members nobody asked for (the same text for both syntaxes, as qemu-storage-daemon
    /// 7.2 prints it; keyval's "Invalid parameter" is for malformed keys, see KeyvalParser).
    package func finish() throws(OptionError) {
        for m in members where !used.contains(m.key) {
            if syntax == .keyval, case .object = m.value { throw OptionError("Parameters '\(full(m.key)).*' are unexpected") }
            throw OptionError("Parameter '\(full(m.key))' is unexpected")
        }
    }

    // MARK: number syntax

    /// Decimal, 0x-hex or 0-octal, no sign (QEMU's parse_uint_full, base 0).
    package static func parseUnsigned(_ s: String) -> UInt64? {
        if s.hasPrefix("0x") || s.hasPrefix("0X") { return UInt64(s.dropFirst(2), radix: 16) }
        if s.count > 1 && s.hasPrefix("0") { return UInt64(s.dropFirst(), radix: 8) }
        guard !s.isEmpty, s.allSatisfy(\.isASCII), s.allSatisfy(\.isNumber) else { return nil }
        return UInt64(s)
    }

    /// A JSON number as QEMU's QMP visitor reads a uint64: integers only; a negative one is
    /// reinterpreted as its two's-complement uint64 (so -1 is out of every smaller range).
    package static func jsonUInt64(_ n: String) -> UInt64? {
        if let u = UInt64(n) { return u }
        if let i = Int64(n) { return UInt64(bitPattern: i) }
        return nil
    }

    package static func parseSize(_ s: String) -> UInt64? {
        // A 0x-prefixed hex integer: no suffix, no fraction (QEMU's qemu_strtosz).
        if s.hasPrefix("0x") || s.hasPrefix("0X") {
            let digits = s.dropFirst(2)
            guard !digits.isEmpty, digits.allSatisfy(\.isHexDigit) else { return nil }
            return UInt64(digits, radix: 16)
        }
        var number = Substring(s)
        var multiplier: UInt64 = 1
        if let last = s.last, last.isLetter {
            number = s.dropLast()
            switch last {
            case "b", "B": multiplier = 1
            case "k", "K": multiplier = 1 << 10
            case "m", "M": multiplier = 1 << 20
            case "g", "G": multiplier = 1 << 30
            case "t", "T": multiplier = 1 << 40
            case "p", "P": multiplier = 1 << 50
            case "e", "E": multiplier = 1 << 60
            default: return nil
            }
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              number.filter({ $0 == "." }).count <= 1, number.first != "." else { return nil }
        if let whole = UInt64(number) {
            let (r, o) = whole.multipliedReportingOverflow(by: multiplier)
            return o ? nil : r
        }
        guard multiplier > 1, let d = Double(number) else { return nil }
        let bytes = d * Double(multiplier)
        guard bytes < 1.8e19 else { return nil }
        return UInt64(bytes)
    }
}
