import Glibc
@testable import BlockBackends
@testable import Kernel
@testable import Virtio

/// A backend that keeps every request in flight until the test releases it (or a quiesce
/// drains it), to put the export in the states a slow disk puts it in.
final class HeldBackend: BlockBackend {
    let size: UInt64
    private(set) var queues: [HeldQueue] = []
    init(size: UInt64) { self.size = size }
    var capabilities: BackendCapabilities { BackendCapabilities(discard: true, writeZeroes: true, resizable: false) }
    func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) -> any BackendQueue {
        let q = HeldQueue(sink: sink)
        queues.append(q)
        return q
    }
    func resize(to bytes: UInt64) {}
}

final class HeldQueue: BackendQueue {
    private unowned let sink: any CompletionSink
    private(set) var held: [UInt16] = []
    /// Every tag ever submitted, in order.
    private(set) var submitted: [UInt16] = []
    private(set) var closed = false
    private var ready: [Completion] = []
    init(sink: any CompletionSink) { self.sink = sink }
    func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        held.append(tag)
        submitted.append(tag)
        return .pending
    }
    func commit() {}
    func reap(into completions: inout [Completion]) {
        completions.append(contentsOf: ready)
        ready.removeAll()
    }
    /// Completes these held requests, as a backend's own event handler would.
    func release(_ tags: [UInt16]) {
        held.removeAll { tags.contains($0) }
        ready += tags.map { Completion(tag: $0, status: .ok) }
        sink.completionsReady()
    }
    var inFlight: Int { held.count }
    func quiesce() {
        ready += held.map { Completion(tag: $0, status: .ok) }
        held.removeAll()
    }
    func close() { closed = true }
}
