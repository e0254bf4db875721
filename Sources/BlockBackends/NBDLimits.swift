import Glibc
import Kernel

/// What an NBD server said about its export in the handshake (libnbd passes the numbers on as
/// the server sent them): the input `NBDLimits` checks and turns into what the client may send.
package struct NBDServerFacts: Equatable, Sendable {
    package var size: UInt64
    package var readOnly: Bool
    package var canFlush: Bool
    package var canTrim: Bool
    package var canZero: Bool
    package var canFastZero: Bool
    package var canMultiConn: Bool
    /// Block size constraints in bytes; 0 when the server did not say.
    package var minimum: UInt64
    package var preferred: UInt64
    package var maximum: UInt64

    package init(size: UInt64, readOnly: Bool, canFlush: Bool, canTrim: Bool, canZero: Bool, canFastZero: Bool,
                 canMultiConn: Bool, minimum: UInt64, preferred: UInt64, maximum: UInt64) {
        self.size = size
        self.readOnly = readOnly
        self.canFlush = canFlush
        self.canTrim = canTrim
        self.canZero = canZero
        self.canFastZero = canFastZero
        self.canMultiConn = canMultiConn
        self.minimum = minimum
        self.preferred = preferred
        self.maximum = maximum
    }
}

/// What the server allows, fixed at the first connection (a reconnect must find the same size).
package struct NBDLimits: Equatable, Sendable {
    package var size: UInt64
    package var canFlush: Bool
    package var canTrim: Bool
    package var canZero: Bool
    /// The server's smallest block (bytes, at least 1); requests are multiples of it.
    package var minimumBlock: UInt64
    /// Largest read or write per NBD command.
    package var maxChunk: UInt64
    /// Largest trim or zero per command (no payload, so the server's payload limit does not apply).
    package var maxZero: UInt64

    /// Checks the server's answer against the device: `writable` on a read-only export, a
    /// logical block size below the server's minimum.
    package init(server: NBDServerFacts, writable: Bool, logicalBlockSize: UInt32) throws(SystemError) {
        if writable && server.readOnly {
            throw SystemError("NBD export is read-only (export it read-only)", errno: EROFS)
        }
        let minimum = max(server.minimum, 1)
        if minimum > UInt64(logicalBlockSize) {
            throw SystemError("the server's minimum block size is \(minimum) bytes: use logical-block-size=\(minimum)",
                              errno: EINVAL)
        }
        var chunk = min(server.maximum == 0 ? 32 << 20 : server.maximum, 32 << 20)
        chunk -= chunk % minimum
        size = server.size
        canFlush = server.canFlush
        canTrim = server.canTrim && writable
        canZero = server.canZero
        minimumBlock = minimum
        maxChunk = max(chunk, minimum)
        maxZero = UInt64(Int32.max) - UInt64(Int32.max) % max(minimum, 4096)
    }
}

/// The NBD commands one request is sent as: consecutive pieces of at most `most` bytes
/// covering `offset..<offset + length`.
package struct NBDChunks {
    private var at: UInt64
    private let end: UInt64
    private let most: UInt64

    package init(offset: UInt64, length: UInt64, most: UInt64) {
        at = offset
        end = offset + length
        self.most = most
    }

    package mutating func next() -> (at: UInt64, length: UInt64)? {
        guard at < end else { return nil }
        let n = min(most, end - at)
        defer { at += n }
        return (at, n)
    }
}
