import CRBD
import Glibc
import Kernel
import QAPI
import Virtio

/// A Ceph RBD image through librbd's asynchronous API (QEMU's `driver=rbd`). Opened before the
/// device exists, so a cluster that cannot be reached, a missing pool or image, or a refused key
/// fails the export with the step and errno. A snapshot is read-only.
package final class RBDBackend: BlockBackend {
    package let spec: RBDSpec
    package private(set) var size: UInt64
    let image: OpaquePointer

    /// The step that failed ("library", "connect", "pool", "image") with librbd's errno.
    package struct OpenError: Error {
        package let step: String
        package let errno: Int32
    }

    /// Why librbd could not be loaded (it is loaded on first use), or nil once it is.
    package static var libraryError: String? { crbd_load().map { String(cString: $0) } }

    package init(spec: RBDSpec, writable: Bool) throws(OpenError) {
        self.spec = spec
        var out: OpaquePointer?
        var step: UnsafePointer<CChar>?
        let r = crbd_open(spec.conf, spec.user, spec.pool, spec.namespace, spec.image, spec.snapshot,
                          writable ? 0 : 1, &out, &step)
        guard r == 0, let out else { throw OpenError(step: step.map { String(cString: $0) } ?? "open", errno: -r) }
        image = out
        var bytes: UInt64 = 0
        let s = crbd_size(out, &bytes)
        guard s == 0 else {
            crbd_close(out)
            throw OpenError(step: "image", errno: -s)
        }
        size = bytes
    }

    deinit { crbd_close(image) }

    package var capabilities: BackendCapabilities {
        BackendCapabilities(discard: spec.snapshot == nil, writeZeroes: true, resizable: spec.snapshot == nil)
    }

    package func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError)
        -> any BackendQueue {
        try RBDBackendQueue(backend: self, depth: depth, loop: loop, sink: sink)
    }

    /// QMP block_resize: librbd changes the image (synchronous, like QEMU's).
    package func resize(to bytes: UInt64) throws(SystemError) {
        guard spec.snapshot == nil else { throw SystemError("resize: a snapshot cannot be resized", errno: EROFS) }
        let r = crbd_resize(image, bytes)
        guard r == 0 else { throw SystemError("rbd_resize", errno: -r) }
        size = bytes
    }
}

/// One queue's requests to an RBD image: librbd completes them on its own threads; the C glue
/// queues the results and signals an eventfd that the iothread watches.
final class RBDBackendQueue: BackendQueue {
    private let backend: RBDBackend
    private let loop: any EventLoop
    private unowned let sink: any CompletionSink
    private let wakeup: EventFD
    private let queue: OpaquePointer
    private let depth: Int
    private(set) var inFlight = 0
    private var closed = false
    private var tags: [UInt16]
    private var results: [Int64]
    private var ready: [Completion] = []

    init(backend: RBDBackend, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError) {
        self.backend = backend
        self.loop = loop
        self.sink = sink
        self.depth = depth
        wakeup = try EventFD()
        guard let q = crbd_queue_create(backend.image, Int32(depth), wakeup.fd) else { throw SystemError("crbd_queue_create", errno: ENOMEM) }
        queue = q
        tags = Array(repeating: 0, count: depth)
        results = Array(repeating: 0, count: depth)
        try loop.watch(wakeup.fd) { [unowned self] in self.onCompletions() }
    }

    deinit {
        // librbd may still hold completions pointing into the queue: never free it with requests out.
        if inFlight == 0 { crbd_queue_destroy(queue) }
    }

    func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        loop.assertCurrent()
        precondition(Int(tag) < depth, "tag beyond the queue depth")
        let r: Int32
        switch io {
        case let .read(offset, buffers, _):
            r = crbd_readv(queue, tag, buffers.baseAddress, Int32(buffers.count), offset)
        case let .write(offset, buffers, _):
            r = crbd_writev(queue, tag, buffers.baseAddress, Int32(buffers.count), offset)
        case .flush:
            r = crbd_flush(queue, tag)
        case let .discard(offset, length):
            r = crbd_discard(queue, tag, offset, length)
        case let .writeZeroes(offset, length, _):
            r = crbd_write_zeroes(queue, tag, offset, length)
        }
        guard r >= 0 else { return .done(.ioError) }
        inFlight += 1
        return .pending
    }

    func commit() {}

    func reap(into completions: inout [Completion]) {
        completions.append(contentsOf: ready)
        ready.removeAll(keepingCapacity: true)
    }

    /// Moves librbd's finished requests to `ready`.
    private func gather() -> Int {
        let n = tags.withUnsafeMutableBufferPointer { t in
            results.withUnsafeMutableBufferPointer { r in crbd_reap(queue, t.baseAddress, r.baseAddress, depth) }
        }
        for i in 0..<n {
            inFlight -= 1
            ready.append(Completion(tag: tags[i], status: results[i] < 0 ? .ioError : .ok))
        }
        return n
    }

    private func onCompletions() {
        wakeup.drain()
        if gather() > 0 { sink.completionsReady() }
    }

    func quiesce() {
        loop.preconditionCurrent()
        while inFlight > 0 {
            var p = pollfd(fd: wakeup.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 100)
            wakeup.drain()
            _ = gather()
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        loop.unwatch(wakeup.fd)
    }
}
