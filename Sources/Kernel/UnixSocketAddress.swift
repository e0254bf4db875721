import Glibc

/// A unix-domain socket address for bind, connect and sendto: a path, or an abstract name when
/// it starts with a NUL byte (as `$NOTIFY_SOCKET`'s `@name` becomes).
package struct UnixSocketAddress {
    private var address = sockaddr_un()
    private let length: socklen_t

    /// nil when the path does not fit in `sun_path`.
    package init?(_ path: String) {
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
    }

    package func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
