import CVDUSE
import Glibc
import Kernel
import Virtio

/// One queue's I/O to a file backend: an io_uring whose completion eventfd the iothread
/// watches. Every operation in the ring carries the request's tag; `operations[tag]` remembers
/// what it was, for short transfers and fallbacks.
final class FileBackendQueue: BackendQueue {
    private let backend: FileBackend
    private let ring: IOUring
    private let loop: any EventLoop
    private unowned let sink: any CompletionSink
    private let depth: Int
    /// Everything that changes, behind one pointer like a queue engine's state: this queue is
    /// used on its iothread only, so a stored property's run-time exclusivity check (about ten
    /// per io_uring request) would guard nothing.
    private let state: UnsafeMutablePointer<State>

    private struct State {
        var operations: [Operation]
        /// Finished since the last `reap`.
        var ready: [Completion] = []
        var inFlight = 0
        var closed = false
        /// Our own aligned buffer of a direct transfer, by tag (see `StagingBuffer`).
        var staged: [StagingBuffer?]
        /// The kernel refused direct I/O on the guest's buffers once: stage every direct transfer.
        var stageDirect = false
    }

    var inFlight: Int { state.pointee.inFlight }

    /// Largest read done inline on a memory-backed image (bigger reads go to io_uring, whose
    /// workers spread them over CPUs). Writes of any size are done inline: tmpfs writes never
    /// complete without blocking in io_uring, and the worker hop cost 1 MiB writes a third of
    /// their throughput (docs/performance.md, 2026-12-05).
    static let inlineTransferLimit = DataPathTuning.current.inlineReadLimit

    private enum Operation {
        case idle
        case read(offset: UInt64, buffers: UnsafeMutableBufferPointer<iovec>, length: Int)
        case write(offset: UInt64, buffers: UnsafeMutableBufferPointer<iovec>, length: Int)
        case flush
        case punchHole(offset: UInt64, length: UInt64)
        /// Advisory: a range the file system would not deallocate is not an I/O error.
        case discard
        case zeroRange(offset: UInt64, length: UInt64)
    }

    init(backend: FileBackend, ring: IOUring, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError) {
        self.backend = backend
        self.ring = ring
        self.loop = loop
        self.sink = sink
        self.depth = depth
        state = .allocate(capacity: 1)
        state.initialize(to: State(operations: Array(repeating: .idle, count: depth),
                                   staged: Array(repeating: nil, count: depth)))
        try loop.watch(ring.completions.fd) { [unowned self] in self.onCompletions() }
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        loop.assertCurrent()
        precondition(Int(tag) < depth, "tag beyond the queue depth")
        switch io {
        case let .read(offset, buffers, length), let .write(offset, buffers, length):
            let isRead = if case .read = io { true } else { false }
            if backend.memoryBacked && (!isRead || length <= Self.inlineTransferLimit) {
                return .done(backend.finishTransfer(write: !isRead, iov: buffers, offset: offset, done: 0, total: length))
            }
            if state.pointee.stageDirect {
                return startStaged(isRead: isRead, offset: offset, buffers: buffers, length: length, tag: tag)
            }
            let iov = UnsafePointer(buffers.baseAddress!)
            return start(isRead ? .read(offset: offset, buffers: buffers, length: length)
                         : .write(offset: offset, buffers: buffers, length: length),
                  isRead ? .readv(fd: backend.fd, iov: iov, count: buffers.count, offset: offset)
                         : .writev(fd: backend.fd, iov: iov, count: buffers.count, offset: offset), tag: tag)
        case .flush:
            return start(.flush, .fdatasync(fd: backend.fd), tag: tag)
        case let .discard(offset, length), let .writeZeroes(offset, length, _):
            let isDiscard = if case .discard = io { true } else { false }
            if backend.kind == .blockDevice {
                let status = backend.blockDeviceRange(discard: isDiscard, offset: offset, length: length)
                return .done(isDiscard ? .ok : status)  // discard is advisory
            }
            if !isDiscard && !backend.canPunchHoles {
                return .done(backend.writeZeros(offset: offset, length: length))
            }
            // A regular file: discard and write-zeroes-with-unmap punch a hole; plain
            // write-zeroes zeroes the range in place (keeping it allocated).
            let punch = if case .writeZeroes(_, _, false) = io { false } else { true }
            let mode = (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE
            return start(isDiscard ? .discard : punch ? .punchHole(offset: offset, length: length) : .zeroRange(offset: offset, length: length),
                  .fallocate(fd: backend.fd, mode: mode, offset: offset, length: length), tag: tag)
        }
    }

    /// A transfer through our own aligned buffer instead of the guest's.
    private func startStaged(isRead: Bool, offset: UInt64, buffers: UnsafeMutableBufferPointer<iovec>, length: Int,
                             tag: UInt16) -> Submission {
        let buffer = StagingBuffer(length: length)
        if !isRead { buffer.gather(from: buffers) }
        state.pointee.staged[Int(tag)] = buffer
        let iov = UnsafePointer(buffer.iov.baseAddress!)
        let submission = start(isRead ? .read(offset: offset, buffers: buffers, length: length)
                                      : .write(offset: offset, buffers: buffers, length: length),
                               isRead ? .readv(fd: backend.fd, iov: iov, count: 1, offset: offset)
                                      : .writev(fd: backend.fd, iov: iov, count: 1, offset: offset), tag: tag)
        if submission != .pending { state.pointee.staged[Int(tag)] = nil }
        return submission
    }

    private func start(_ operation: Operation, _ ringOperation: IOUring.Operation, tag: UInt16) -> Submission {
        do {
            try ring.prepare(ringOperation, tag: UInt64(tag))
        } catch {
            return .done(.ioError)
        }
        state.pointee.operations[Int(tag)] = operation
        state.pointee.inFlight += 1
        return .pending
    }

    func reap(into completions: inout [Completion]) {
        completions.append(contentsOf: state.pointee.ready)
        state.pointee.ready.removeAll(keepingCapacity: true)
    }

    /// Hands prepared entries to the kernel. A submit that fails for want of resources (EAGAIN,
    /// EBUSY) or falls short is retried: after reaping when requests are in flight, else after a
    /// short pause, so that no prepared entry is stranded waiting for another request.
    func commit() {
        loop.assertCurrent()
        var pauses = 0
        while ring.unsubmitted > 0 {
            do {
                if try ring.submit() > 0 { continue }
            } catch where error.errno == .resourceTemporarilyUnavailable || error.errno == .resourceBusy {
            } catch {
                return  // the ring itself failed: the entries stay counted for the next commit
            }
            if state.pointee.inFlight > ring.unsubmitted {
                gather(resubmit: false)  // completions free kernel resources
            } else if pauses < 1000 {
                pauses += 1
                usleep(1000)
            } else {
                return
            }
        }
    }

    func pollCompletions() -> Bool {
        guard ring.hasCompletions else { return !state.pointee.ready.isEmpty }
        gather()
        return true
    }

    /// The ring's eventfd fired: gather, then tell the engine (from the loop, not from inside it).
    private func onCompletions() {
        gather()
        if !state.pointee.ready.isEmpty { sink.completionsReady() }
    }

    /// Moves the ring's completions to `ready`, re-submitting transfers re-started while reaping.
    private func gather(resubmit: Bool = true) {
        ring.completions.drain()
        ring.reap { tag, result in complete(tag: Int(tag), result: result) }
        if resubmit && ring.unsubmitted > 0 { commit() }
    }

    private func complete(tag: Int, result: Int32) {
        guard tag < depth else { return }
        let status: BlockStatus
        switch state.pointee.operations[tag] {
        case .idle:
            return
        case let .read(offset, buffers, length), let .write(offset, buffers, length):
            let isWrite = if case .write = state.pointee.operations[tag] { true } else { false }
            let buffer = state.pointee.staged[tag]
            if result == -EFAULT && backend.direct && buffer == nil {
                // The kernel cannot pin the guest's buffers for direct I/O: go through ours,
                // for this transfer and from now on.
                state.pointee.stageDirect = true
                state.pointee.operations[tag] = .idle
                state.pointee.inFlight -= 1
                if case let .done(status) = startStaged(isRead: !isWrite, offset: offset, buffers: buffers,
                                                        length: length, tag: UInt16(tag)) {
                    state.pointee.ready.append(Completion(tag: UInt16(tag), status: status))
                }
                return  // submitted once the reaping is over (gather), not from inside it
            }
            if result < 0 {
                status = .ioError
            } else if let buffer {
                status = Int(result) == length ? .ok
                    : backend.finishTransfer(write: isWrite, iov: buffer.iov, offset: offset, done: Int(result), total: length)
                if !isWrite && status == .ok { buffer.scatter(to: buffers, count: length) }
            } else if Int(result) == length {
                status = .ok
            } else {
                status = backend.finishTransfer(write: isWrite, iov: buffers, offset: offset, done: Int(result), total: length)
            }
            state.pointee.staged[tag] = nil
        case let .zeroRange(offset, length) where result == -EOPNOTSUPP || result == -EINVAL:
            // The file system cannot zero a range in place (tmpfs): punching reads back zeros too.
            state.pointee.operations[tag] = .punchHole(offset: offset, length: length)
            do {
                try ring.prepare(.fallocate(fd: backend.fd, mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                            offset: offset, length: length), tag: UInt64(tag))
                try ring.submit()
                return
            } catch {
                status = .ioError
            }
        case .discard:
            status = .ok
        case .flush, .punchHole, .zeroRange:
            status = result == 0 ? .ok : .ioError
        }
        state.pointee.operations[tag] = .idle
        state.pointee.inFlight -= 1
        state.pointee.ready.append(Completion(tag: UInt16(tag), status: status))
    }

    func quiesce() {
        while state.pointee.inFlight > 0 {
            if ring.unsubmitted > 0 { _ = try? ring.submit() }
            guard let done = try? ring.wait() else { break }
            complete(tag: Int(done.tag), result: done.result)
            gather(resubmit: false)
        }
    }

    func close() {
        guard !state.pointee.closed else { return }
        state.pointee.closed = true
        loop.unwatch(ring.completions.fd)
    }
}
