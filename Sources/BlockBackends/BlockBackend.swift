import Glibc
import Kernel
import Virtio

/// The storage behind an export, seen by the block server through one interface: the queue
/// engine parses a chain into a typed `BlockIO` and hands it to its `BackendQueue`, which either
/// finishes it at once (`.done`) or later; later completions are collected by the engine with
/// `reap(into:)`. A backend never calls into the engine while the engine is working: formats
/// that need several dependent I/Os (qcow2) and network clients with their own fds (NBD, RBD)
/// watch their fds in the `EventLoop` and only say `completionsReady()` from those handlers.
package protocol BlockBackend: AnyObject {
    /// Virtual disk size in bytes.
    var size: UInt64 { get }
    var capabilities: BackendCapabilities { get }
    /// One queue's channel to the backend. Called on the iothread that will serve the queue;
    /// `sink` owns the returned queue and outlives it.
    func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError)
        -> any BackendQueue
    /// Grows or shrinks the storage (QMP block_resize). Called on the export's iothread.
    func resize(to bytes: UInt64) throws(SystemError)
    /// What a block job reads this backend through from a thread of its own while the export's
    /// queues keep using it: itself, unless its channels belong to one loop (NBD).
    func forCopying() throws(SystemError) -> any BlockBackend
}

extension BlockBackend {
    package func forCopying() throws(SystemError) -> any BlockBackend { self }
}

/// What `submit` did with a request.
package enum Submission: Equatable {
    /// Finished inside `submit`; it never comes back through `reap`.
    case done(BlockStatus)
    /// Comes back through `reap(into:)` exactly once. Buffers stay valid until then.
    case pending
}

/// A request a backend finished after `submit` returned.
package struct Completion: Equatable {
    package var tag: UInt16
    package var status: BlockStatus

    package init(tag: UInt16, status: BlockStatus) {
        self.tag = tag
        self.status = status
    }
}

/// A queue's requests to its backend. Iothread only.
package protocol BackendQueue: AnyObject {
    /// Starts `io`, or does it at once.
    func submit(_ io: BlockIO, tag: UInt16) -> Submission
    /// End of a batch of submits: hand queued work to the kernel or the network.
    func commit()
    /// Moves the completions gathered since the last call to `completions`.
    func reap(into completions: inout [Completion])
    /// Requests submitted as pending and not reapable yet.
    var inFlight: Int { get }
    /// Blocks until every pending request is reapable (before a device reset or a re-mapping
    /// invalidates their buffers). Says nothing to the sink.
    func quiesce()
    /// Stops watching the loop; nothing more becomes reapable after this.
    func close()
    /// Gathers completions that are ready without waiting for their fd to wake the loop (the
    /// iothread is spinning); says whether there are any to reap.
    func pollCompletions() -> Bool
}

extension BackendQueue {
    package func pollCompletions() -> Bool { false }
}

/// Told when completions wait to be reaped: the queue server of one virtqueue. Called only from
/// the backend's own event handlers (never from inside `submit`, `commit`, `reap` or `quiesce`).
package protocol CompletionSink: AnyObject {
    func completionsReady()
}

/// The event loop a backend may hook its fds into: the iothread that serves the queue.
package protocol EventLoop: AnyObject {
    /// Calls `handler` on the loop whenever `fd` is readable.
    func watch(_ fd: Int32, handler: @escaping () -> Void) throws(SystemError)
    func unwatch(_ fd: Int32)
    /// Also calls a watched fd's handler when the fd is writable (a socket whose send buffer was
    /// full), or no longer.
    func setWritable(_ fd: Int32, _ writable: Bool)
    /// For messages about confinement.
    var name: String { get }
    /// True on the loop's own thread (a thread-local compare, no lock).
    var isCurrent: Bool { get }
}

extension EventLoop {
    /// Per request: traps off the loop's thread in debug builds (release builds skip the check).
    package func assertCurrent(file: StaticString = #fileID, line: UInt = #line) {
        assert(isCurrent, "not on iothread '\(name)'", file: file, line: line)
    }

    /// At control-plane entries (setup, teardown, reset): traps off the loop's thread, always.
    package func preconditionCurrent(file: StaticString = #fileID, line: UInt = #line) {
        precondition(isCurrent, "not on iothread '\(name)'", file: file, line: line)
    }
}

/// One request, typed: what the guest asked for, checked against the export's size already.
package enum BlockIO {
    /// Fill `buffers` (`length` bytes in all) from `offset`.
    case read(offset: UInt64, buffers: UnsafeMutableBufferPointer<iovec>, length: Int)
    /// Write `buffers` (`length` bytes in all) at `offset`.
    case write(offset: UInt64, buffers: UnsafeMutableBufferPointer<iovec>, length: Int)
    case flush
    case discard(offset: UInt64, length: UInt64)
    /// `unmap`: the range may be deallocated, as long as it reads back as zeros.
    case writeZeroes(offset: UInt64, length: UInt64, unmap: Bool)
}

/// What a backend can do, which decides the features the device offers.
package struct BackendCapabilities: Equatable, Sendable {
    package var discard: Bool
    package var writeZeroes: Bool
    package var resizable: Bool

    package init(discard: Bool, writeZeroes: Bool, resizable: Bool) {
        self.discard = discard
        self.writeZeroes = writeZeroes
        self.resizable = resizable
    }
}
