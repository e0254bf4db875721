/// The one character rule for the names QEMU and we accept (ids, node names, keyval keys, VDUSE
/// device names, export names): ASCII letters, digits, '-', '_', and '.' where it is not a
/// separator. Each caller adds its own limits (first character, length, reserved names).
public enum Identifier {
    public static func isNameCharacter(_ c: Unicode.Scalar, allowingDot: Bool = true) -> Bool {
        switch c {
        case "a"..."z", "A"..."Z", "0"..."9", "-", "_": true
        case ".": allowingDot
        default: false
        }
    }

    /// Only name characters (the empty string too: callers check length).
    public static func hasOnlyNameCharacters(_ s: String, allowingDot: Bool = true) -> Bool {
        s.unicodeScalars.allSatisfy { isNameCharacter($0, allowingDot: allowingDot) }
    }

    /// QEMU's id_wellformed (and a keyval key without dots): an ASCII letter, then name characters.
    public static func isWellFormed(_ s: String, allowingDot: Bool = true) -> Bool {
        guard let first = s.unicodeScalars.first, ("a"..."z").contains(first) || ("A"..."Z").contains(first) else { return false }
        return hasOnlyNameCharacters(s, allowingDot: allowingDot)
    }
}
