import Glibc

/// Formats we read: qcow2 and raw (everything without the qcow2 magic, as qemu-nbd probes).
public enum ImageFormat: String, Sendable, CaseIterable {
    case raw, qcow2

    /// qcow2 if the file starts with the qcow2 magic, raw otherwise.
    public static func probe(path: String) throws -> ImageFormat {
        let f = try ImageFile(path: path, writable: false)
        defer { f.close() }
        guard try f.size() >= 4 else { return .raw }
        return try f.read(count: 4, at: 0).be32(0) == Header.magic ? .qcow2 : .raw
    }
}

/// Which backing image to use.
public enum BackingChoice: Sendable, Equatable {
    /// The one named in the header (format from the header extension, else probed).
    case fromHeader
    /// None: unallocated clusters read as zeros.
    case none
    /// This file instead of the header's (format probed when nil).
    case file(path: String, format: ImageFormat?)
}

/// Something unallocated clusters can read through to. Bytes past its size read as zeros.
protocol BackingImage: AnyObject {
    var virtualSize: UInt64 { get }
    func read(at offset: UInt64, into iov: IOVector, _ ioOffset: Int, _ length: Int) throws
    func closeBacking()
}

/// A raw file opened read-only as a backing image.
final class RawBacking: BackingImage {
    let file: ImageFile
    let virtualSize: UInt64

    init(file: ImageFile) throws {
        self.file = file
        virtualSize = try file.size()
    }

    func read(at offset: UInt64, into iov: IOVector, _ ioOffset: Int, _ length: Int) throws {
        var pieces = iov.slice(ioOffset, length)
        try file.readv(&pieces, at: offset)  // zeros past the end of the file
    }

    func closeBacking() { file.close() }
}

extension Qcow2Image: BackingImage {
    func read(at offset: UInt64, into iov: IOVector, _ ioOffset: Int, _ length: Int) throws {
        try readClamped(at: offset, into: iov, ioOffset, length)
    }

    func closeBacking() { try? close() }  // read-only: nothing to flush, nothing to report
}

/// Where a backing file name points: absolute, or relative to the directory of the image.
func resolveBacking(_ name: String, relativeTo image: String) -> String {
    if name.hasPrefix("/") { return name }
    guard let slash = image.lastIndex(of: "/") else { return name }
    return String(image[...slash]) + name
}

/// Opens a backing image read-only, refusing a file already in the chain.
func openBacking(path: String, format: ImageFormat?, of image: String, chain: [(String, FileIdentity)],
                 l2CacheBytes: Int?, lock: FileLocker? = nil) throws -> BackingImage {
    var st = stat()
    guard stat(path, &st) == 0 else {
        if errno == ENOENT { throw Qcow2Error.backingMissing(image: image, backing: path) }
        throw Qcow2Error.io(path: path, operation: "stat", errno: errno)
    }
    let id = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    if chain.contains(where: { $0.1 == id }) {
        throw Qcow2Error.backingLoop(chain: chain.map(\.0) + [path])
    }
    switch try format ?? ImageFormat.probe(path: path) {
    case .raw:
        let file = try ImageFile(path: path, writable: false)
        do {
            try lock?(file.fd, path, false)
        } catch {
            file.close()
            throw error
        }
        return try RawBacking(file: file)
    case .qcow2:
        return try Qcow2Image(path: path, readOnly: true, backing: .fromHeader, l2CacheBytes: l2CacheBytes,
                              chain: chain + [(path, id)], lock: lock)
    }
}
