import Foundation
import Glibc

/// Newline-framed messages read from a file descriptor (QMP replies, the readiness pipe): the
/// one place that buffers partial reads, retries EINTR and bounds the wait. What a line means
/// (JSON, which type) is the caller's.
package struct LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    /// Longest line kept; a longer one fails (a peer that never ends its line).
    private let limit: Int

    /// Borrows `fd` (the caller owns it and keeps it open while reading).
    package init(fd: Int32, limit: Int = 1 << 20) {
        self.fd = fd
        self.limit = limit
    }

    /// The next line without its newline (and a trailing CR), or what is left before EOF; nil
    /// at EOF. Past `deadline`: `ETIMEDOUT`; a line over the limit: `EMSGSIZE`.
    package mutating func next(until deadline: Deadline? = nil) throws(SystemError) -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let newline = buffer.firstIndex(of: 0x0a) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == 0x0d { line.removeLast() }
                return line
            }
            guard buffer.count <= limit else { throw SystemError("read line", errno: EMSGSIZE) }
            if let deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, Int32(min(deadline.remainingSeconds * 1000, 60_000).rounded(.up)))
                if ready < 0 && errno == EINTR { continue }
                if ready < 0 { throw SystemError("poll", errno: errno) }
                if ready == 0 {
                    if deadline.hasPassed { throw SystemError("read line", errno: ETIMEDOUT) }
                    continue
                }
            }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN && deadline != nil { continue }
            if n < 0 { throw SystemError("read", errno: errno) }
            if n == 0 {
                guard !buffer.isEmpty else { return nil }
                defer { buffer.removeAll() }
                return buffer
            }
            buffer += chunk[0..<n]
        }
    }
}

/// Writes `line` and a newline in one go; false when the peer is gone.
@discardableResult
package func writeLine(_ fd: Int32, _ line: some Sequence<UInt8>) -> Bool {
    var data = Data(line)
    data.append(0x0a)
    return writeAll(fd, data)
}
