import CNBD
import Glibc
import Kernel
import QAPI
import Virtio

/// An export of an NBD server (QEMU's `driver=nbd`), through libnbd's asynchronous API. The
/// connections are made here, before the device exists, so that an unreachable server, a
/// missing export or a refused permission fails the export with libnbd's reason. With
/// multi-conn (the server says concurrent connections see each other's writes and flushes)
/// each queue gets its own connection; otherwise all queues share one.
package final class NBDBackend: BlockBackend {
    package let spec: NBDSpec
    package let timing: NBDTiming
    package let size: UInt64
    package let readOnly: Bool
    /// The server's smallest block (bytes); requests must be multiples of it.
    package let minimumBlock: UInt64
    package let preferredBlock: UInt64
    /// Whether the server offers fast zero; reported, never used (see the write-zeroes case of
    /// NBDConnection.issue).
    package let canFastZero: Bool
    private let limits: NBDLimits
    /// The server says its connections see each other's writes and flushes.
    private let offersMultiConn: Bool
    private var connections: [NBDConnection] = []

    /// Connects (up to `queues` connections with multi-conn) and checks the export against
    /// what the device needs: `writable` on a read-only export, a logical block size below the
    /// server's minimum. `timing` nil: the spec's.
    package init(spec: NBDSpec, timing: NBDTiming? = nil, writable: Bool, queues: Int, logicalBlockSize: UInt32)
        throws(SystemError) {
        self.spec = spec
        let timing = timing ?? NBDTiming(spec)
        self.timing = timing
        let first = try NBDHandle.connect(spec, timeoutMs: timing.connectTimeoutMs)
        let server = first.facts
        limits = try NBDLimits(server: server, writable: writable, logicalBlockSize: logicalBlockSize)
        size = server.size
        readOnly = server.readOnly
        minimumBlock = limits.minimumBlock
        preferredBlock = server.preferred
        canFastZero = server.canFastZero
        offersMultiConn = server.canMultiConn
        let count = server.canMultiConn ? max(queues, 1) : 1
        let notice = try NBDShutdownNotice(connections: count)
        connections.append(try NBDConnection(handle: first, spec: spec, timing: timing, limits: limits, notice: notice, index: 0))
        for i in 1..<max(count, 1) {
            connections.append(try NBDConnection(handle: try NBDHandle.connect(spec, timeoutMs: timing.connectTimeoutMs), spec: spec,
                                                 timing: timing, limits: limits, notice: notice, index: i))
        }
    }

    package var multiConn: Bool { connections.count > 1 }

    package var capabilities: BackendCapabilities {
        BackendCapabilities(discard: limits.canTrim, writeZeroes: true, resizable: false)
    }

    package func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError)
        -> any BackendQueue {
        try NBDBackendQueue(connection: connections[index % connections.count], depth: depth, loop: loop, sink: sink)
    }

    /// A connection of its own for a job's copy (a connection serves the one loop its queues
    /// run on). Read there, what the export's connections wrote must be visible: the server
    /// promises that only with multi-conn, so without it a job cannot copy from this export.
    package func forCopying() throws(SystemError) -> any BlockBackend {
        guard offersMultiConn else {
            throw SystemError("copy from \(spec.uri): the server does not offer multi-conn (a second connection may not see the disk's writes)",
                              errno: ENOTSUP)
        }
        return try NBDBackend(spec: spec, timing: timing, writable: false, queues: 1,
                              logicalBlockSize: UInt32(max(minimumBlock, 512)))
    }

    package func resize(to bytes: UInt64) throws(SystemError) {
        throw SystemError("resize: an NBD export cannot be resized from the client", errno: ENOTSUP)
    }
}
