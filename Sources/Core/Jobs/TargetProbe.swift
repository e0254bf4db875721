import Glibc
import BlockBackends
import Kernel
import QAPI
import Virtio

/// What `mirror` learns of a network target (NBD export, RBD image) before it starts a job on
/// it: its size, and whether its first MiB reads as zeros. A network target has no file size or
/// allocated blocks to look at, so that head is the cheap sign of data someone may still need.
public struct TargetProbe: Sendable, Equatable {
    public var size: UInt64
    /// The first min(size, 1 MiB) bytes are all zero.
    public var headIsZero: Bool

    public static let headLength = 1 << 20

    /// Opens `spec` read-only on an iothread of its own, reads the head and closes it again.
    /// Throws the backend's open error (unreachable server, no such image: exit status 4).
    public static func inspect(_ spec: BackendSpec) throws -> TargetProbe {
        var readOnly = spec
        readOnly.readOnly = true
        let plan = ExportPlan(id: "probe", deviceName: "probe", backend: readOnly)
        let thread = try IOThread(name: "target-probe")
        thread.start()
        defer { thread.stop() }
        return try thread.run {
            let backend = try ExportFactory.openBackend(plan)
            let length = Int(min(backend.size, UInt64(headLength)))
            guard length > 0 else { return TargetProbe(size: backend.size, headIsZero: true) }
            let sink = IdleSink()
            defer { withExtendedLifetime(sink) {} }  // the queue keeps it unowned
            let queue = try backend.makeQueue(index: 0, depth: 1, loop: thread, sink: sink)
            defer { queue.close() }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 4096)
            defer { buffer.deallocate() }
            var iov = iovec(iov_base: buffer, iov_len: length)
            let status = withUnsafeMutablePointer(to: &iov) { p -> BlockStatus in
                let io = BlockIO.read(offset: 0, buffers: UnsafeMutableBufferPointer(start: p, count: 1), length: length)
                if case let .done(s) = queue.submit(io, tag: 0) { return s }
                queue.commit()
                queue.quiesce()
                var done: [Completion] = []
                queue.reap(into: &done)
                return done.first?.status ?? .ioError
            }
            guard status == .ok else {
                throw ExportError("cannot read the first \(length) bytes of \(spec.pathDescription)", code: .kernel)
            }
            let bytes = UnsafeRawBufferPointer(start: buffer, count: length)
            return TargetProbe(size: backend.size, headIsZero: !bytes.contains { $0 != 0 })
        }
    }
}
