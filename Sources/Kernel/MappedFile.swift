import Glibc

/// A file mapped shared into memory, `length` bytes from offset 0: stores reach the page cache at
/// once, so they survive this process dying at any instruction. Unmapped and closed with the owner.
package final class MappedFile {
    package let path: String
    package let base: UnsafeMutableRawPointer
    package let length: Int
    private let descriptor: UniqueFD

    /// Opens `path` (created 0600 when `create`), sized to `length`.
    package init(path: String, length: Int, create: Bool) throws(SystemError) {
        let descriptor = try UniqueFD(open: path, O_RDWR | (create ? O_CREAT : 0), mode: 0o600)
        var st = stat()
        try sys("fstat(\(path))") { fstat(descriptor.rawValue, &st) }
        if create || st.st_size < off_t(length) {
            try sys("ftruncate(\(path))") { ftruncate(descriptor.rawValue, off_t(length)) }
        }
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor.rawValue, 0),
              base != MAP_FAILED else { throw SystemError("mmap(\(path))", errno: errno) }
        self.path = path
        self.base = base
        self.length = length
        self.descriptor = descriptor
    }

    /// Size of the file at `path`, nil when it does not exist.
    package static func size(of path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    deinit { munmap(base, length) }
}
