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

/// What libFuzzer calls with each input.
public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

/// The entry point: libFuzzer's driver with this process's arguments (-DFUZZING builds), else a
/// replay of the files named on the command line. SwiftPM names every executable's entry point
/// itself, so libFuzzer's own `main` cannot be used.
public func fuzzMain(_ callback: FuzzCallback, replay: (UnsafeRawBufferPointer) -> Void) -> Never {
    #if FUZZING
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
    #else
    replayFiles(CommandLine.arguments.dropFirst(), replay)
    exit(0)
    #endif
}

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                                 _ callback: FuzzCallback) -> Int32
#endif
