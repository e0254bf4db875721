import Foundation

/// A path as records and overlay headers compare paths: absolute (against the working
/// directory), `.` and `..` removed, symlinks resolved as far as the path exists. One function,
/// so the client, the server and a snapshot name the same file the same way.
package func canonicalPath(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
}
