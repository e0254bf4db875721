import Foundation

/// The `vduse-export` binary `swift build` made, run as a script runs it. Missing, it is a
/// failure, not a skip: `swift test` builds it too.
public enum BuiltCommand {
    /// The package's root directory.
    public static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    public static var binary: URL? {
        for dir in [".build/debug", ".build/x86_64-unknown-linux-gnu/debug"] {
            let url = repo.appendingPathComponent(dir).appendingPathComponent("vduse-export")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return nil
    }

    /// Runs the binary with `args`; exit status and both streams.
    public static func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        guard let binary else { throw TestFailure("build the vduse-export binary first (swift build)") }
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
