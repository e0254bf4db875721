import Glibc

/// Runs `body` on the contents of each file (directories: each file in them).
public func replayFiles(_ paths: ArraySlice<String>, _ body: (UnsafeRawBufferPointer) -> Void) {
    for path in paths {
        var files = [path]
        if let dir = opendir(path) {
            files = []
            while let e = readdir(dir) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if !name.hasPrefix(".") { files.append(path + "/" + name) }
            }
            closedir(dir)
        }
        for f in files.sorted() {
            guard let h = fopen(f, "rb") else { print("cannot open \(f)"); exit(2) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while case let n = fread(&chunk, 1, chunk.count, h), n > 0 { bytes += chunk[0..<n] }
            fclose(h)
            bytes.withUnsafeBytes(body)
            print("ok \(f) (\(bytes.count) bytes)")
        }
    }
}

/// The target this process fuzzes (set once by `fuzzMain`, before libFuzzer starts).
nonisolated(unsafe) private var target: ((UnsafeRawBufferPointer) -> Void)?

/// What libFuzzer calls with each input. Its runtime also links its own `main`, which needs this
/// symbol; SwiftPM names every executable's entry point itself, so that `main` is never used.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target?(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// The entry point of every fuzz target: libFuzzer's driver with this process's arguments
/// (-DFUZZING builds), else a replay of the files named on the command line.
public func fuzzMain(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
    target = body
    #if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzerTestOneInput(data, size) })
    #else
    replayFiles(CommandLine.arguments.dropFirst(), body)
    exit(0)
    #endif
}

/// A file in a fresh directory (`/dev/shm/fuzz-TARGET.XXXXXX/NAME`, else under /tmp) that each
/// input is written to, for targets whose code under test opens a path. On tmpfs the code's own
/// fdatasync costs nothing; on a disk it was most of an input's time.
public struct ScratchFile: Sendable {
    public let path: String
    /// The fresh directory it is in (for fixed files the input refers to by name).
    public var directory: String { String(path[..<path.lastIndex(of: "/")!]) }

    public init(target: String, name: String) {
        let parent = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(parent)/fuzz-\(target).XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp") }
        let directory = String(cString: p)
        path = directory + "/" + name
        if scratchDirectories.isEmpty { atexit(removeScratchDirectories) }
        scratchDirectories.append(directory)
    }

    /// Replaces the file's contents with `bytes`; returns the path.
    public func holding(_ bytes: UnsafeRawBufferPointer) -> String {
        let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        _ = write(fd, bytes.baseAddress, bytes.count)
        close(fd)
        return path
    }
}

/// Directories made by `ScratchFile`, removed at a normal exit (a crash leaves them as evidence).
nonisolated(unsafe) private var scratchDirectories: [String] = []

private func removeScratchDirectories() {
    for directory in scratchDirectories {
        guard let dir = opendir(directory) else { continue }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(directory + "/" + name) }
        }
        closedir(dir)
        rmdir(directory)
    }
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                                 _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32
#endif
