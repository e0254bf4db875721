import CVDUSE
import Glibc
import Kernel
import Virtio

/// QEMU's `null-co`: reads return zeros, writes and everything else succeed at once.
package final class NullBackend: BlockBackend, BackendQueue {
    package private(set) var size: UInt64

    /// Zero read buffers with plain stores rather than memset (DataPathTuning's `null-fill`).
    private let fillWithStores: Bool

    package init(size: UInt64, fillWithStores: Bool = DataPathTuning.current.nullFillStores) {
        self.size = size
        self.fillWithStores = fillWithStores
    }

    package var capabilities: BackendCapabilities {
        BackendCapabilities(discard: true, writeZeroes: true, resizable: true)
    }

    /// Stateless and finished inside `submit`, so one object serves every queue.
    package func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) -> any BackendQueue {
        self
    }

    package func resize(to bytes: UInt64) { size = bytes }

    package func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        if case let .read(_, buffers, _) = io {
            for piece in buffers {
                guard let base = piece.iov_base else { continue }
                if fillWithStores { cvduse_zero_fill(base, piece.iov_len) } else { memset(base, 0, piece.iov_len) }
            }
        }
        return .done(.ok)
    }

    package func reap(into completions: inout [Completion]) {}

    package func commit() {}
    package var inFlight: Int { 0 }
    package func quiesce() {}
    package func close() {}
}
