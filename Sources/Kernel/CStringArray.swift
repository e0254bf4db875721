import Glibc

/// Calls `body` with `strings` as a NULL-terminated array of C strings (argv, name lists for C),
/// which live only for the call: copied once, freed afterwards.
package func withCStringArray<R, E: Error>(
    _ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) throws(E) -> R
) throws(E) -> R {
    var array: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
    defer { for p in array { free(p) } }
    return try array.withUnsafeMutableBufferPointer { (buffer) throws(E) -> R in try body(buffer.baseAddress!) }
}
