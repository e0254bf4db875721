import Glibc
import FuzzSupport
import QCOW2

/// One input is one qcow2 image file, written as `image.qcow2` next to fixed backing files
/// (`Backings`) its header may name. It is opened read-only with the backing chain its header
/// names and read at spread offsets, then opened writable (with its chain, or without one if the
/// chain does not open) and written, discarded, zeroed, grown and read again. Any error is fine;
/// a crash, a hang, a change to a backing file, or the file growing far beyond what the writes
/// need is not.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    let path = scratch.holding(bytes)

    var buf = [UInt8](repeating: 0, count: 128 << 10)
    if let image = try? Qcow2Image(path: path, readOnly: true, backing: .fromHeader, l2CacheBytes: 1 << 20) {
        readSpread(image, &buf)
        try? image.close()
    }
    defer { backings.checkUnchanged() }
    guard let image = (try? Qcow2Image(path: path, readOnly: false, backing: .fromHeader, l2CacheBytes: 1 << 20))
        ?? (try? Qcow2Image(path: path, readOnly: false, backing: .none, l2CacheBytes: 1 << 20)) else { return }
    let size = image.virtualSize
    let pattern = [UInt8](repeating: 0xa5, count: 70_000)
    for (i, at) in offsets(size).enumerated() {
        let length = Int(min(UInt64(pattern.count), size - at))
        pattern.withUnsafeBytes { p in
            switch i % 4 {
            case 0, 1: try? image.write(at: at, from: UnsafeRawBufferPointer(rebasing: p[0..<length]))
            case 2: try? image.discard(at: at, length: length)
            default: try? image.writeZeroes(at: at, length: length, unmap: i % 8 == 3)
            }
        }
    }
    try? image.resize(to: size &+ (1 << 20))
    readSpread(image, &buf)
    try? image.close()
    // What the writes above may add: data, L2 tables, refcount blocks and a moved table.
    var st = stat()
    stat(path, &st)
    precondition(UInt64(st.st_size) <= UInt64(bytes.count) + (64 << 20), "the image grew to \(st.st_size) bytes")
}

/// Start, end and a few offsets between, capped so a huge virtual size costs no more.
func offsets(_ size: UInt64) -> [UInt64] {
    guard size > 0 else { return [] }
    // Every offset inside the disk: a small size must not put one past the end (the harness's
    // own `size - at` trapped on that), a huge one must not overflow.
    return [0, size / 3, size / 2 &+ 4097, size - min(size, 4096), 65_536 % size, size / 4 * 3].filter { $0 < size }
}

func readSpread(_ image: Qcow2Image, _ buf: inout [UInt8]) {
    let size = image.virtualSize
    for at in offsets(size) {
        let n = Int(min(UInt64(buf.count), size - at))
        buf.withUnsafeMutableBytes { p in _ = try? image.read(at: at, into: UnsafeMutableRawBufferPointer(rebasing: p[0..<n])) }
    }
}

let scratch = ScratchFile(target: "qcow2", name: "image.qcow2")
let backings = Backings(in: scratch.directory)

@main struct Main {
    static func main() {
        _ = backings
        fuzzMain(fuzzOne)
    }
}
