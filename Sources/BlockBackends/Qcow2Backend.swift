import Glibc
import Kernel
import QAPI
import QCOW2
import Synchronization
import Virtio

/// A qcow2 image (and its backing chain) served by the QCOW2 engine.
///
/// This round does each request synchronously inside `submit` and completes it at once. The
/// engine's allocation and metadata state is not safe to share, so one lock covers it for every
/// queue of the export, whichever iothreads they run on.
package final class Qcow2Backend: BlockBackend, Sendable {
    package let path: String
    package let writable: Bool
    /// Guest discards reach the image only with `discard=unmap` (QEMU's default is ignore).
    package let discardUnmap: Bool
    /// `writethrough=on`: every change is flushed (data and metadata) before it completes.
    package let writethrough: Bool
    private let image: Mutex<Qcow2Image>
    /// The first corruption is logged; the rest only fail their requests (a guest retrying a
    /// broken area must not flood the log).
    private let corruptionLogged = Atomic<Bool>(false)

    /// Opens the image `spec` names; its backing as the spec says (the engine's own choice type
    /// is for its callers that know no QAPI: tests, overlays, the fuzzer).
    package init(spec: Qcow2Spec, writable: Bool, writethrough: Bool, lock: FileLocker? = nil) throws {
        path = spec.path
        self.writable = writable
        self.writethrough = writethrough
        discardUnmap = spec.discardUnmap
        let backing: BackingChoice = switch spec.backing {
        case .fromImage: .fromHeader
        case .none: .none
        case let .image(path, qcow2): .file(path: path, format: qcow2 ? .qcow2 : .raw)
        }
        image = Mutex(try Qcow2Image(path: spec.path, readOnly: !writable, backing: backing,
                                     l2CacheBytes: spec.l2CacheSize.map { Int($0) }, lock: lock))
    }

    deinit { image.withLock { try? $0.close() } }

    package var size: UInt64 { image.withLock { $0.virtualSize } }

    package var capabilities: BackendCapabilities {
        BackendCapabilities(discard: true, writeZeroes: true, resizable: writable)
    }

    package func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) -> any BackendQueue {
        Qcow2BackendQueue(backend: self)
    }

    package func resize(to bytes: UInt64) throws(SystemError) {
        do {
            try image.withLock { try $0.resize(to: bytes) }
        } catch {
            throw SystemError("resize: \(error)", errno: (error as? Qcow2Error)?.errno ?? EINVAL)
        }
    }

    /// Does one request; any engine error is an I/O error for the guest.
    func perform(_ io: BlockIO) -> BlockStatus {
        do {
            try image.withLock { (img: inout Qcow2Image) throws in
                switch io {
                case let .read(offset, buffers, _):
                    try img.read(at: offset, into: buffers.map { UnsafeMutableRawBufferPointer(start: $0.iov_base, count: $0.iov_len) })
                case let .write(offset, buffers, _):
                    try img.write(at: offset, from: buffers.map { UnsafeRawBufferPointer(start: $0.iov_base, count: $0.iov_len) })
                case .flush:
                    try img.flush()
                case let .discard(offset, length):
                    if discardUnmap { try img.discard(at: offset, length: Int(length)) }
                case let .writeZeroes(offset, length, unmap):
                    try img.writeZeroes(at: offset, length: Int(length), unmap: unmap && discardUnmap)
                }
                if writethrough, !io.isRead { try img.flush() }
            }
            return .ok
        } catch {
            if case .corrupt = error as? Qcow2Error, !corruptionLogged.exchange(true, ordering: .relaxed) {
                let marked = writable ? "; image marked corrupt, no more writes are taken" : ""
                let line = Array("vduse-export: qcow2: \(error)\(marked) (further corruption is not logged)\n".utf8)
                _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            }
            return .ioError
        }
    }

    /// Whether [offset, offset + length) reads anything from above `base` in the chain (what a
    /// commit into `base` copies). An engine error counts as allocated (copied, to be safe).
    package func allocatedAbove(base: String, at offset: UInt64, length: UInt64) -> Bool {
        image.withLock { img in (try? img.allocatedAbove(base: base, at: offset, length: length)) ?? true }
    }

    /// Lets another open file write `path`, a backing file of this chain that stays open as a
    /// reader (a commit into it), or (`share: false`) refuses that again.
    package func shareWrites(of path: String, _ share: Bool) throws(ExportError) {
        try image.withLock { img throws(ExportError) in
            guard let fd = img.descriptor(of: path) else { return }
            if share {
                ImageLock.shareWrites(fd: fd)
            } else {
                try ImageLock.acquire(fd: fd, path: path, writable: false, forceShare: false, checkOthers: false)
            }
        }
    }

    /// Flushes and closes the image (clears the dirty bit of lazy refcounts).
    package func close() throws {
        try image.withLock { try $0.close() }
    }
}

extension BlockIO {
    var isRead: Bool {
        if case .read = self { true } else { false }
    }
}

/// One queue's view of a `Qcow2Backend`: every request completes inside `submit`.
final class Qcow2BackendQueue: BackendQueue {
    private let backend: Qcow2Backend

    init(backend: Qcow2Backend) { self.backend = backend }

    func submit(_ io: BlockIO, tag: UInt16) -> Submission { .done(backend.perform(io)) }
    func reap(into completions: inout [Completion]) {}

    func commit() {}
    var inFlight: Int { 0 }
    func quiesce() {}
    func close() {}
}
