import Glibc
import Virtio

/// Per-head state of the requests a queue engine has handed to its backend: where the status
/// byte goes, the used length, and the iovec array the backend reads the data pieces from.
/// Owns those arrays (allocated on first use, grown as needed, freed with the slots); part of
/// the engine's value, so it is not copyable.
struct RequestSlots: ~Copyable {
    struct Slot {
        var busy = false
        var status: UnsafeMutablePointer<UInt8>?
        var usedLength: UInt32 = 0
        var iov: UnsafeMutablePointer<iovec>?
        var iovCapacity = 0
        /// What the request is and how many bytes it moves (counted when it completes).
        var kind = RequestKind.other
        var bytes: UInt64 = 0
    }

    /// A fixed buffer, not an array: no copy-on-write check on the per-request path.
    private let slots: UnsafeMutableBufferPointer<Slot>
    private(set) var busy = 0

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: Slot())
    }

    deinit {
        for slot in slots { slot.iov?.deallocate() }
        slots.deallocate()
    }

    func isBusy(_ head: Int) -> Bool { head < slots.count && slots[head].busy }

    /// Copies the request's data pieces into the slot's iovec array (kept until completion).
    func fill(_ head: Int, _ pieces: [MemoryPiece]) -> UnsafeMutableBufferPointer<iovec> {
        if slots[head].iov == nil || slots[head].iovCapacity < pieces.count {
            slots[head].iov?.deallocate()
            let capacity = max(pieces.count, 16)
            slots[head].iov = .allocate(capacity: capacity)
            slots[head].iovCapacity = capacity
        }
        let iov = slots[head].iov!
        for (i, piece) in pieces.enumerated() { iov[i] = iovec(iov_base: piece.base, iov_len: piece.length) }
        return UnsafeMutableBufferPointer(start: iov, count: pieces.count)
    }

    mutating func begin(_ head: Int, status: UnsafeMutablePointer<UInt8>?, usedLength: UInt32, kind: RequestKind,
                        bytes: UInt64) {
        precondition(!slots[head].busy, "head \(head) started twice")
        slots[head].busy = true
        slots[head].kind = kind
        slots[head].bytes = bytes
        slots[head].status = status
        slots[head].usedLength = usedLength
        busy += 1
    }

    /// Ends the request at `head`; a completion for a head not in flight is a backend bug.
    mutating func finish(_ head: Int) -> Slot {
        precondition(head < slots.count && slots[head].busy, "completion for head \(head), which is not in flight")
        slots[head].busy = false
        busy -= 1
        return slots[head]
    }
}
