import BlockBackends
import FuzzSupport
import Glibc

/// One input is what an NBD server said in its handshake plus the guest requests that follow:
/// `NBDLimits` checks the server's numbers against the export, then each request is planned
/// into NBD commands (`NBDChunks`) with the limit the connection uses for it. libnbd parses the
/// wire; what we do with its numbers is ours.
///
/// Input (little-endian, missing bytes are zeros):
///   0-7    export size
///   8      bit 0 read-only, 1 flush, 2 trim, 3 write zeroes, 4 fast zero, 5 multi-conn,
///          bit 6 the export is writable
///   9      logical block size 512 << (b % 13) (what the option parser allows)
///   10     minimum block size: 0 (not said) or 1 << (b % 17) (what libnbd lets through)
///   11-14  preferred block size, 15-18 maximum block size (as sent: anything)
///   19...  requests of 13 bytes: kind (b % 3: read or write, discard, write zeroes), offset
///          (8 bytes, taken modulo the size and aligned to the block size), length (4 bytes,
///          in blocks for discard and write zeroes), clipped at the end of the disk as the
///          queue engine guarantees
///
/// Checked: refusals are exactly the two the server's answer can cause (EROFS, EINVAL); the
/// limits are multiples of the minimum block and inside what the server and the protocol
/// allow; the commands of a request are never empty, never above their limit, aligned when the
/// request is, and cover the request exactly.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    var input = Reader(bytes)
    let size = input.u64()
    let flags = input.u8()
    let logicalBlockSize = UInt32(512) << (UInt32(input.u8()) % 13)
    let m = input.u8() % 18
    let facts = NBDServerFacts(size: size, readOnly: flags & 1 != 0, canFlush: flags & 2 != 0, canTrim: flags & 4 != 0,
                               canZero: flags & 8 != 0, canFastZero: flags & 16 != 0, canMultiConn: flags & 32 != 0,
                               minimum: m == 17 ? 0 : 1 << UInt64(m), preferred: UInt64(input.u32()), maximum: UInt64(input.u32()))
    let writable = flags & 64 != 0
    let limits: NBDLimits
    do {
        limits = try NBDLimits(server: facts, writable: writable, logicalBlockSize: logicalBlockSize)
    } catch {
        let minimum = max(facts.minimum, 1)
        if writable && facts.readOnly {
            precondition(error.errno.rawValue == EROFS, "read-only export refused with \(error)")
        } else {
            precondition(minimum > logicalBlockSize && error.errno.rawValue == EINVAL, "refused: \(error)")
        }
        return
    }
    precondition(!(writable && facts.readOnly) && max(facts.minimum, 1) <= logicalBlockSize, "accepted what must be refused")
    let minimum = limits.minimumBlock
    precondition(minimum == max(facts.minimum, 1) && limits.size == facts.size)
    precondition(limits.maxChunk >= minimum && limits.maxChunk % minimum == 0 && limits.maxChunk <= 32 << 20,
                 "read/write limit \(limits.maxChunk) with minimum \(minimum)")
    if facts.maximum >= minimum { precondition(limits.maxChunk <= facts.maximum, "above the server's maximum") }
    precondition(limits.maxZero > 0 && limits.maxZero <= UInt64(Int32.max) && limits.maxZero % max(minimum, 4096) == 0,
                 "trim/zero limit \(limits.maxZero)")
    precondition(!limits.canTrim || (writable && facts.canTrim))

    let block = UInt64(logicalBlockSize)
    let capacity = size - size % block
    while input.left >= 13 {
        let kind = input.u8() % 3
        var offset = capacity == 0 ? 0 : input.u64() % capacity
        offset -= offset % block
        var length = UInt64(input.u32())
        if kind != 0 { length *= block }
        length = min(length, capacity - offset)
        switch kind {
        case 0: check(offset, length, most: limits.maxChunk, minimum)
        case 1: check(offset, length, most: limits.maxZero, minimum)
        default:
            check(offset, length, most: limits.maxZero, minimum)
            check(offset, length, most: min(limits.maxChunk, 1 << 20), minimum)
        }
    }
}

/// Walks the commands of one request (the first 1,024: a server allowing tiny commands makes
/// very many, which is slow but not wrong) and checks each, and their number when all are seen.
func check(_ offset: UInt64, _ length: UInt64, most: UInt64, _ minimum: UInt64) {
    var plan = NBDChunks(offset: offset, length: length, most: most)
    var at = offset
    let aligned = offset % minimum == 0 && length % minimum == 0
    for count in 0..<1024 {
        guard let (start, n) = plan.next() else {
            precondition(at == offset + length, "commands end at \(at), the request at \(offset + length)")
            precondition(UInt64(count) == (length + most - 1) / most, "\(count) commands for \(length) bytes by \(most)")
            return
        }
        precondition(start == at && n > 0 && n <= most, "command \(start)+\(n) after \(at), limit \(most)")
        if aligned { precondition(n % minimum == 0, "unaligned command \(n) with minimum \(minimum)") }
        at += n
    }
}

struct Reader {
    private let bytes: UnsafeRawBufferPointer
    private var at = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
    var left: Int { bytes.count - at }

    mutating func u8() -> UInt8 {
        defer { at += 1 }
        return at < bytes.count ? bytes[at] : 0
    }
    mutating func u32() -> UInt32 { (0..<4).reduce(0) { v, i in v | UInt32(u8()) << (8 * i) } }
    mutating func u64() -> UInt64 { (0..<8).reduce(0) { v, i in v | UInt64(u8()) << (8 * i) } }
}

@main struct Main {
    static func main() { fuzzMain(fuzzOne) }
}
