import Core
import FuzzSupport
import Glibc

/// One input is a reconnect log as a crashed (or hostile) server could leave it: opened as at
/// reattach and recovered against a used index and used ring taken from the input's tail.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    let path = scratch.holding(bytes)
    guard let log = InflightLog.open(path: path) else { return }
    let tail = bytes.count >= 2 ? UInt16(bytes[bytes.count - 1]) << 8 | UInt16(bytes[bytes.count - 2]) : 0
    for q in 0..<min(log.identity.queues, 4) {
        let queue = log.queue(q)
        let recovered = queue.recover(ringUsedIndex: tail &+ UInt16(q)) { slot in
            bytes.isEmpty ? slot : UInt16(bytes[Int(slot) % bytes.count]) &* 7 &+ slot
        }
        for head in recovered.heads { precondition(Int(head) < log.identity.queueSize, "head \(head) out of the ring") }
        queue.reset()
    }
}

let scratch = ScratchFile(target: "inflight", name: "export.inflight")

@main struct Main {
    static func main() { fuzzMain(fuzzOne) }
}
