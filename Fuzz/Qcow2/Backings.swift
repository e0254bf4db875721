import Glibc
import QCOW2

/// The files a fuzzed image's backing-file name can reach by a short relative name, made once
/// per process in the scratch directory: `base.qcow2` (1 MiB, its first 64 KiB written),
/// `base.raw` (64 KiB of data) and `loop.qcow2`, whose own backing file is `image.qcow2` (the
/// input: a loop of two). The seeds name each of them, and `image.qcow2` itself.
/// Every input must leave them as they were: a backing file is only ever read.
struct Backings {
    private var files: [(path: String, bytes: [UInt8])] = []

    init(in directory: String) {
        let base = directory + "/base.qcow2", raw = directory + "/base.raw", loop = directory + "/loop.qcow2"
        do {
            try Qcow2Image.create(path: base, size: 1 << 20, clusterSize: 512)
            let image = try Qcow2Image(path: base, readOnly: false, backing: .none)
            let data = [UInt8](repeating: 0x3c, count: 64 << 10)
            try data.withUnsafeBytes { try image.write(at: 0, from: $0) }
            try image.close()
            try Qcow2Image.create(path: loop, size: 1 << 20, backing: (path: "image.qcow2", format: .qcow2), clusterSize: 512)
        } catch {
            fatalError("making the fixed backing files: \(error)")
        }
        let fd = open(raw, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        let data = [UInt8](repeating: 0xc3, count: 64 << 10)
        precondition(fd >= 0 && write(fd, data, data.count) == data.count, "cannot write \(raw)")
        close(fd)
        files = [base, raw, loop].map { ($0, Self.contents($0)) }
    }

    func checkUnchanged() {
        for f in files { precondition(Self.contents(f.path) == f.bytes, "\(f.path) changed") }
    }

    private static func contents(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        precondition(fd >= 0, "cannot open \(path)")
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        precondition(n == bytes.count, "cannot read \(path)")
        return bytes
    }
}
