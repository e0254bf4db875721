import Synchronization

/// Which chunks of a disk a job still has to copy: set by guest writes (on the iothread) and at
/// the start, taken one at a time by the job's thread. A chunk is cleared *before* it is read,
/// so a write that completes after that sets it again and it is copied again.
package final class DirtyBitmap: Sendable {
    package let chunkSize: UInt64
    package let size: UInt64
    package let chunks: Int
    private struct Bits {
        var words: [UInt64]
        var count = 0
    }
    private let bits: Mutex<Bits>

    /// Chunks of at least `minimumChunk` bytes, larger for big disks (at most 2^20 chunks).
    package init(size: UInt64, minimumChunk: UInt64 = 64 << 10) {
        var chunk = minimumChunk
        while (size + chunk - 1) / chunk > 1 << 20 { chunk *= 2 }
        chunkSize = chunk
        self.size = size
        chunks = Int((size + chunk - 1) / chunk)
        bits = Mutex(Bits(words: [UInt64](repeating: 0, count: (chunks + 63) / 64)))
    }

    /// Chunks waiting to be copied.
    package var dirtyCount: Int { bits.withLock { $0.count } }

    package func mark(chunk i: Int) {
        bits.withLock { b in
            let (w, m) = (i / 64, UInt64(1) << UInt64(i % 64))
            if b.words[w] & m == 0 {
                b.words[w] |= m
                b.count += 1
            }
        }
    }

    /// Marks every chunk [offset, offset + length) touches.
    package func mark(offset: UInt64, length: UInt64) {
        guard length > 0, offset < size else { return }
        let first = Int(offset / chunkSize), last = Int(min(offset + length - 1, size - 1) / chunkSize)
        bits.withLock { b in
            for i in first...last {
                let (w, m) = (i / 64, UInt64(1) << UInt64(i % 64))
                if b.words[w] & m == 0 {
                    b.words[w] |= m
                    b.count += 1
                }
            }
        }
    }

    /// Marks the whole disk (a full mirror).
    package func markAll() { mark(offset: 0, length: size) }

    /// Clears and returns the first dirty chunk at or after `start` (wrapping around), if any.
    package func take(from start: Int) -> Int? {
        bits.withLock { b in
            guard b.count > 0 else { return nil }
            for k in 0..<b.words.count {
                let w = (start / 64 + k) % b.words.count
                var word = b.words[w]
                if k == 0 { word &= ~UInt64(0) << UInt64(start % 64) }
                if word == 0 { continue }
                let i = w * 64 + word.trailingZeroBitCount
                b.words[w] &= ~(UInt64(1) << UInt64(i % 64))
                b.count -= 1
                return i
            }
            // Only bits below `start` in its own word are left.
            let w = start / 64
            let i = w * 64 + b.words[w].trailingZeroBitCount
            b.words[w] &= ~(UInt64(1) << UInt64(i % 64))
            b.count -= 1
            return i
        }
    }

    /// Clears and returns the first dirty chunk at or after `start` (wrapping around) and the
    /// dirty chunks right after it, up to `limit` chunks in all (not past the last chunk): one
    /// request copies them.
    package func takeRun(from start: Int, limit: Int) -> (first: Int, count: Int)? {
        guard let first = take(from: start) else { return nil }
        guard limit > 1 else { return (first, 1) }
        return bits.withLock { b in
            var count = 1
            while count < limit, first + count < chunks {
                let i = first + count
                let (w, m) = (i / 64, UInt64(1) << UInt64(i % 64))
                guard b.words[w] & m != 0 else { break }
                b.words[w] &= ~m
                b.count -= 1
                count += 1
            }
            return (first, count)
        }
    }

    /// Marks chunks [first, first + count) again (a failed copy of a run).
    package func mark(run: (first: Int, count: Int)) {
        for i in run.first..<(run.first + run.count) { mark(chunk: i) }
    }

    /// The byte range of chunks [first, first + count).
    package func range(of run: (first: Int, count: Int)) -> (offset: UInt64, length: UInt64) {
        let offset = UInt64(run.first) * chunkSize
        return (offset, min(UInt64(run.count) * chunkSize, size - offset))
    }

    /// The byte range of chunk `i`.
    package func range(of i: Int) -> (offset: UInt64, length: UInt64) {
        let offset = UInt64(i) * chunkSize
        return (offset, min(chunkSize, size - offset))
    }
}
