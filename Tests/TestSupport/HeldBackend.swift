import Glibc
import BlockBackends
import Kernel
import Virtio

/// A backend that keeps every request in flight until the test releases it (or a quiesce
/// drains it), to put the export in the states a slow disk puts it in.
package final class HeldBackend: BlockBackend {
    package let size: UInt64
    package private(set) var queues: [HeldQueue] = []
    package init(size: UInt64) { self.size = size }
    package var capabilities: BackendCapabilities { BackendCapabilities(discard: true, writeZeroes: true, resizable: false) }
    package func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) -> any BackendQueue {
        let q = HeldQueue(sink: sink)
        queues.append(q)
        return q
    }
    package func resize(to bytes: UInt64) {}
}

package final class HeldQueue: BackendQueue {
    private unowned let sink: any CompletionSink
    package private(set) var held: [UInt16] = []
    /// Every tag ever submitted, in order.
    package private(set) var submitted: [UInt16] = []
    package private(set) var closed = false
    private var ready: [Completion] = []
    package init(sink: any CompletionSink) { self.sink = sink }
    package func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        held.append(tag)
        submitted.append(tag)
        return .pending
    }
    package func commit() {}
    package func reap(into completions: inout [Completion]) {
        completions.append(contentsOf: ready)
        ready.removeAll()
    }
    /// Completes these held requests, as a backend's own event handler would.
    package func release(_ tags: [UInt16]) {
        held.removeAll { tags.contains($0) }
        ready += tags.map { Completion(tag: $0, status: .ok) }
        sink.completionsReady()
    }
    package var inFlight: Int { held.count }
    package func quiesce() {
        ready += held.map { Completion(tag: $0, status: .ok) }
        held.removeAll()
    }
    package func close() { closed = true }
}
