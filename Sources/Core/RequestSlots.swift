import Glibc
import Virtio

/// Per-head state of the requests a queue server has handed to its backend: where the status
/// byte goes, the used length, and the iovec array the backend reads the data pieces from.
/// Owns those arrays (allocated on first use, grown as needed, freed with the slots).
package final class RequestSlots {
    package struct Slot {
        package var busy = false
        package var status: UnsafeMutablePointer<UInt8>?
        package var usedLength: UInt32 = 0
        package var iov: UnsafeMutablePointer<iovec>?
        package var iovCapacity = 0
        /// What the request is and how many bytes it moves (counted when it completes).
        package var kind = RequestKind.other
        package var bytes: UInt64 = 0
    }

    private var slots: [Slot]
    private(set) var busy = 0

    package init(count: Int) { slots = Array(repeating: Slot(), count: count) }

    deinit {
        for slot in slots { slot.iov?.deallocate() }
    }

    package func isBusy(_ head: Int) -> Bool { head < slots.count && slots[head].busy }

    /// Copies the request's data pieces into the slot's iovec array (kept until completion).
    package func fill(_ head: Int, _ pieces: [MemoryPiece]) -> UnsafeMutableBufferPointer<iovec> {
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

    package func begin(_ head: Int, status: UnsafeMutablePointer<UInt8>?, usedLength: UInt32, kind: RequestKind = .other,
                       bytes: UInt64 = 0) {
        precondition(!slots[head].busy, "head \(head) started twice")
        slots[head].busy = true
        slots[head].kind = kind
        slots[head].bytes = bytes
        slots[head].status = status
        slots[head].usedLength = usedLength
        busy += 1
    }

    /// Ends the request at `head`; a completion for a head not in flight is a backend bug.
    package func finish(_ head: Int) -> Slot {
        precondition(head < slots.count && slots[head].busy, "completion for head \(head), which is not in flight")
        slots[head].busy = false
        busy -= 1
        return slots[head]
    }
}
