import FuzzSupport
import Virtio

/// One input is 64 KiB of guest memory (shorter inputs are zero-padded) mapped at IOVA 0x10000
/// with a hole and a read-only part: the descriptor table sits at its start and its first two
/// bytes give the table size. Every head is walked, framed and turned into an action against a
/// 1 MiB disk; the data pieces are then filled or read as a backend would, and the status written.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    let memorySize = 64 << 10
    let memory = UnsafeMutableRawPointer.allocate(byteCount: memorySize, alignment: 16)
    defer { memory.deallocate() }
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: memorySize)
    memory.copyMemory(from: bytes.baseAddress ?? UnsafeRawPointer(memory), byteCount: min(bytes.count, memorySize))

    let space = IOVASpace()
    let base: UInt64 = 0x10000
    space.add(.init(first: base, last: base + 0x7fff, base: memory, readable: true, writable: true))
    // 0x18000-0x18fff unmapped; the rest device-readable only.
    space.add(.init(first: base + 0x9000, last: base + 0xffff, base: memory + 0x9000, readable: true, writable: false))

    let tableSize = UInt16(max(1, min(1024, Int(memory.load(as: UInt16.self)))))
    let geometry = BlockExportGeometry(capacitySectors: 2048, logicalBlockSize: 512, writable: true,
                                       serial: Array("fuzz".utf8))
    var chain = DescriptorChain(head: 0)
    var request = BlockRequest()
    for head in 0..<min(tableSize, 64) {
        do {
            try chain.walk(head: head, table: UnsafeRawPointer(memory), tableSize: tableSize, memory: space, maxSegments: 130)
        } catch {
            continue
        }
        do {
            try request.frame(chain)
        } catch {
            request.status?.pointee = BlockStatus.ioError.rawValue
            continue
        }
        switch request.action(for: geometry) {
        case let .read(_, length):
            var left = length
            for piece in request.data where left > 0 {
                let n = min(left, piece.length)
                piece.base.initializeMemory(as: UInt8.self, repeating: 0x5a, count: n)
                left -= n
            }
        case let .write(_, length):
            var sum = 0, left = length
            for piece in request.data where left > 0 {
                let n = min(left, piece.length)
                for i in 0..<n { sum &+= Int(piece.base.load(fromByteOffset: i, as: UInt8.self)) }
                left -= n
            }
            _ = sum
        case .getID:
            request.writeID(serial: geometry.serial)
        default:
            break
        }
        request.status?.pointee = BlockStatus.ok.rawValue
    }
}

@main struct Main {
    static func main() { fuzzMain(fuzzOne) }
}
