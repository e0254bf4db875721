/// QEMU's keyval syntax (`key=value,key2=value2`, `,,` for a literal comma, dotted keys for
/// nesting, `name.0=…,name.1=…` for lists, and an optional implied first key).
public enum KeyvalParser {
    public static func parse(_ text: String, impliedKey: String?) throws(OptionError) -> OptionValue {
        var pairs: [(key: String, value: String)] = []
        var chars = Array(text)
        var i = 0
        var first = true
        if chars.isEmpty { chars = [] }
        while i < chars.count || first && !chars.isEmpty {
            // key: up to '=' or ','
            var key = ""
            var sawEquals = false
            while i < chars.count && chars[i] != "=" && chars[i] != "," {
                key.append(chars[i]); i += 1
            }
            if i < chars.count && chars[i] == "=" { sawEquals = true; i += 1 }
            var value = ""
            if sawEquals {
                while i < chars.count {
                    if chars[i] == "," {
                        if i + 1 < chars.count && chars[i + 1] == "," { value.append(","); i += 2; continue }
                        break
                    }
                    value.append(chars[i]); i += 1
                }
            } else {
                // No '=': only the implied key of the first parameter may be omitted.
                guard first, let impliedKey else {
                    throw OptionError(key.isEmpty ? "Expected parameter before ','" : "No implicit parameter name for value '\(key)'")
                }
                // The implied value may contain doubled commas too.
                while i < chars.count && chars[i] == "," && i + 1 < chars.count && chars[i + 1] == "," {
                    key.append(","); i += 2
                    while i < chars.count && chars[i] != "," && chars[i] != "=" { key.append(chars[i]); i += 1 }
                }
                value = key
                key = impliedKey
            }
            guard !key.isEmpty else { throw OptionError("Invalid parameter ''") }
            pairs.append((key, value))
            first = false
            if i < chars.count && chars[i] == "," {
                i += 1
                if i == chars.count { break }  // trailing comma
            }
        }
        return try nest(pairs)
    }

    private static func isName(_ s: String) -> Bool { Identifier.isWellFormed(s, allowingDot: false) }

    /// Deepest key nesting accepted (QEMU's JSON parser has the same bound).
    public static let maxDepth = 1024

    /// Builds the tree from dotted keys; an object whose keys are all 0,1,2… becomes a list.
    private static func nest(_ pairs: [(key: String, value: String)]) throws(OptionError) -> OptionValue {
        final class Node {
            var value: String?
            var children: [(String, Node)] = []
            func child(_ k: String) -> Node {
                if let c = children.first(where: { $0.0 == k }) { return c.1 }
                let n = Node(); children.append((k, n)); return n
            }
        }
        let root = Node()
        for (key, value) in pairs {
            var node = root
            let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            // Nothing we accept nests deeply; a bound keeps the tree (and the recursion over
            // it) small whatever the input.
            guard parts.count <= maxDepth else {
                throw OptionError("Invalid parameter '\(key.prefix(64))…': nested deeper than \(maxDepth) levels")
            }
            for (depth, part) in parts.enumerated() {
                // Each fragment is a QAPI name (a letter, then letters, digits, '-', '_'), or
                // after the first one a list index.
                guard isName(part) || depth > 0 && !part.isEmpty && part.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw OptionError("Invalid parameter '\(key)'")
                }
                // Built only for a message: joining at every depth made long keys quadratic.
                var prefix: String { parts[0...depth].joined(separator: ".") }
                if depth < parts.count - 1 {
                    node = node.child(part)
                    if node.value != nil { throw OptionError("Parameters '\(prefix).*' used inconsistently") }
                } else {
                    let leaf = node.child(part)
                    guard leaf.children.isEmpty else { throw OptionError("Parameters '\(prefix).*' used inconsistently") }
                    leaf.value = value  // a repeated key keeps its last value, as in QEMU
                }
            }
        }
        func build(_ n: Node, path: String) throws(OptionError) -> OptionValue {
            if let v = n.value { return .string(v) }
            let keys = n.children.map(\.0)
            if !keys.isEmpty, keys.allSatisfy({ Int($0) != nil }) {
                let indices = keys.compactMap { Int($0) }.sorted()
                guard indices == Array(0..<indices.count), keys.allSatisfy({ $0 == String(Int($0)!) }) else {
                    throw OptionError("Parameter '\(path).\(indices.first(where: { !indices.contains($0 - 1) && $0 != 0 }) ?? 0)' is missing")
                }
                var items: [OptionValue] = []
                for i in 0..<indices.count {
                    items.append(try build(n.children.first { $0.0 == String(i) }!.1, path: "\(path).\(i)"))
                }
                return .list(items)
            }
            var members: [(key: String, value: OptionValue)] = []
            for (k, c) in n.children {
                members.append((k, try build(c, path: path.isEmpty ? k : "\(path).\(k)")))
            }
            return .object(members)
        }
        return try build(root, path: "")
    }
}
