import BlockBackends
import Core
import FuzzSupport
import Glibc
import Kernel
import Logging
import Virtio

/// One input drives one virtqueue through the real queue server (`VirtqueueServer` and its
/// `QueueEngine`) for a few rounds, as a guest's driver and a slow disk would, without the kernel.
///
/// Input: 16 control bytes, then the device-readable guest memory (descriptor table, then the
/// available ring, then whatever headers and data the descriptors point at), then the writable
/// guest memory (used ring first). Missing bytes are zeros. Guest memory is two separate
/// allocations with an unmapped IOVA hole between, so ASan sees any access outside them:
///   IOVA 0x10000-0x17fff  writable   (used ring at 0x10000)
///   IOVA 0x18000-0x18fff  unmapped
///   IOVA 0x19000-0x1ffff  read-only  (descriptor table at 0x19000, available ring after it)
/// Control bytes:
///   0      queue size 2^(b % 9); bit 7: the raw size from bytes 14-15 instead (setup must refuse
///          anything not a power of 2 up to 32768 that does not fit)
///   1      bit 0 event index, bit 1 writable export, bit 2 used ring in read-only memory,
///          bit 3 descriptor table across the hole (both must be refused), bit 4 4096-byte
///          logical blocks, bit 5 the disk shrinks to half after the second round
///   2      rounds, 1 + b % 8
///   3-4    capacity in sectors (little-endian)
///   5-12   how far the driver moves `avail->idx` before each round (more than the ring holds
///          breaks the queue)
///   13-15  which submissions the backend keeps in flight and which it fails (bit k of the 24
///          bits for the k-th submission, alternating between the two uses)
///
/// Checked: nothing is written to device-readable memory, every request handed to the backend
/// lies inside the disk and carries exactly its buffers, nothing is left in flight after a
/// drain, and there are never more answers than heads taken. (What the used ring holds is not
/// checked: a guest may give the device a buffer over its own used ring, and the data then lands
/// there, as on real hardware; regression-buffer-over-used-ring is such an input.)
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    var control = [UInt8](repeating: 0, count: 16)
    for i in 0..<min(16, bytes.count) { control[i] = bytes[i] }
    let guest = bytes.count > 16 ? UnsafeRawBufferPointer(rebasing: bytes[16...]) : UnsafeRawBufferPointer(start: nil, count: 0)
    let memory = GuestMemory(guest)
    defer { memory.release() }

    var size = UInt16(1) << (UInt16(control[0] & 0x7f) % 9)
    if control[0] & 0x80 != 0 { size = UInt16(control[14]) | UInt16(control[15]) << 8 }
    let flags = control[1]
    let descTable: UInt64 = flags & 8 != 0 ? GuestMemory.writableIOVA + 0x7f00 : GuestMemory.readOnlyIOVA
    let availRing = GuestMemory.readOnlyIOVA + 16 * UInt64(size)
    let usedRing = flags & 4 != 0 ? GuestMemory.readOnlyIOVA + 0x6000 : GuestMemory.writableIOVA
    let addresses = SplitVirtqueue.Addresses(size: size, descriptorTable: descTable, availRing: availRing, usedRing: usedRing)
    guard let ring = try? SplitVirtqueue(index: 0, addresses: addresses, eventIndex: flags & 1 != 0, memory: memory.space)
    else {
        // Refused is right for these; anything else must have been accepted.
        precondition(flags & 0x0c != 0 || control[0] & 0x80 != 0, "a valid ring was refused")
        return
    }

    let blockSize: UInt32 = flags & 0x10 != 0 ? 4096 : 512
    var geometry = BlockExportGeometry(capacitySectors: UInt64(control[3]) | UInt64(control[4]) << 8,
                                       logicalBlockSize: blockSize, writable: flags & 2 != 0, serial: Array("fuzz-queue".utf8))
    let backend = HeldBackend(pattern: UInt32(control[13]) | UInt32(control[14]) << 8 | UInt32(control[15]) << 16)
    backend.capacity = geometry.capacitySectors * 512
    let server: VirtqueueServer
    do {
        server = try VirtqueueServer(queue: ring, backend: backend, geometry: geometry, memory: memory.space, loop: loop,
                                     logger: quiet, interrupt: {})
    } catch {
        fatalError("queue server: \(error)")
    }

    let availIdx = memory.readOnly + Int(availRing - GuestMemory.readOnlyIOVA) + 2
    for round in 0..<(1 + Int(control[2]) % 8) {
        // The driver offers more requests (the heads are already in the ring).
        let step = Int(control[5 + round])
        let idx = UInt16(littleEndian: availIdx.loadUnaligned(as: UInt16.self)) &+ UInt16(step)
        memory.driverWrites(idx.littleEndian, at: availIdx)
        server.processAvailable()
        // The disk finishes part of what it holds, as its own event handler would say.
        if backend.release(half: true) { server.completionsReady() }
        if round == 1, flags & 0x20 != 0 {
            geometry.capacitySectors /= 2
            server.geometry = geometry
            backend.capacity = geometry.capacitySectors * 512
        }
    }
    server.drain(publish: true)
    precondition(server.inFlight == 0, "\(server.inFlight) request(s) in flight after a drain")
    precondition(backend.held.isEmpty, "the backend still holds \(backend.held.count) request(s)")
    let queue = server.queue
    // At most one answer per head taken (the index the driver found in memory counts as offered).
    precondition(queue.usedIndex <= queue.lastAvailIndex, "\(queue.usedIndex) answers for \(queue.lastAvailIndex) heads taken")
    server.close()
    memory.checkReadOnlyUntouched()
}

/// Guest memory: a writable and a read-only region, each its own allocation, and a copy of the
/// read-only one as the driver left it.
final class GuestMemory {
    static let writableIOVA: UInt64 = 0x10000
    static let readOnlyIOVA: UInt64 = 0x19000
    static let writableSize = 0x8000
    static let readOnlySize = 0x7000
    let writable: UnsafeMutableRawPointer
    let readOnly: UnsafeMutableRawPointer
    private let expected: UnsafeMutableRawPointer
    let space = IOVASpace()

    init(_ input: UnsafeRawBufferPointer) {
        writable = .allocate(byteCount: Self.writableSize, alignment: 16)
        readOnly = .allocate(byteCount: Self.readOnlySize, alignment: 16)
        expected = .allocate(byteCount: Self.readOnlySize, alignment: 16)
        writable.initializeMemory(as: UInt8.self, repeating: 0, count: Self.writableSize)
        readOnly.initializeMemory(as: UInt8.self, repeating: 0, count: Self.readOnlySize)
        if let base = input.baseAddress {
            let first = min(input.count, Self.readOnlySize)
            readOnly.copyMemory(from: base, byteCount: first)
            writable.copyMemory(from: base + first, byteCount: min(input.count - first, Self.writableSize))
        }
        expected.copyMemory(from: readOnly, byteCount: Self.readOnlySize)
        space.add(.init(first: Self.writableIOVA, last: Self.writableIOVA + UInt64(Self.writableSize) - 1, base: writable,
                        readable: true, writable: true))
        space.add(.init(first: Self.readOnlyIOVA, last: Self.readOnlyIOVA + UInt64(Self.readOnlySize) - 1, base: readOnly,
                        readable: true, writable: false))
    }

    /// A store by the driver into its own read-only (to the device) memory.
    func driverWrites(_ value: UInt16, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: value, as: UInt16.self)
        (expected + (pointer - readOnly)).storeBytes(of: value, as: UInt16.self)
    }

    func checkReadOnlyUntouched() {
        precondition(memcmp(readOnly, expected, Self.readOnlySize) == 0, "the device wrote to device-readable memory")
    }

    func release() {
        writable.deallocate()
        readOnly.deallocate()
        expected.deallocate()
    }
}

/// A disk that keeps some requests in flight until the harness releases them, fails some, and
/// touches every buffer byte it is given, as a real backend would (reads: at completion).
final class HeldBackend: BlockBackend, BackendQueue {
    var capacity: UInt64 = 0
    var size: UInt64 { capacity }
    var capabilities: BackendCapabilities { BackendCapabilities(discard: true, writeZeroes: true, resizable: true) }
    private let pattern: UInt32
    private var submissions = 0
    private(set) var held: [(tag: UInt16, io: BlockIO)] = []
    private var ready: [Completion] = []

    init(pattern: UInt32) { self.pattern = pattern }

    func makeQueue(index: Int, depth: Int, loop: any EventLoop, sink: any CompletionSink) -> any BackendQueue { self }
    func resize(to bytes: UInt64) { capacity = bytes }

    func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        precondition(!held.contains { $0.tag == tag }, "tag \(tag) submitted twice")
        switch io {
        case let .read(offset, buffers, length), let .write(offset, buffers, length):
            precondition(buffers.reduce(0) { $0 + $1.iov_len } == length, "buffers do not add up to the length")
            precondition(offset <= capacity && UInt64(length) <= capacity - offset, "request past the end of the disk")
            if case .write = io {
                var sum = 0
                for piece in buffers {
                    for i in 0..<piece.iov_len { sum &+= Int(piece.iov_base!.load(fromByteOffset: i, as: UInt8.self)) }
                }
                withExtendedLifetime(sum) {}
            }
        case let .discard(offset, length), let .writeZeroes(offset, length, _):
            precondition(offset <= capacity && length <= capacity - offset, "request past the end of the disk")
        case .flush:
            break
        }
        let k = submissions % 12
        submissions += 1
        let fail = pattern >> (2 * k) & 1 != 0
        if pattern >> (2 * k + 1) & 1 != 0 {
            held.append((tag, io))
            return .pending
        }
        if !fail { fill(io) }
        return .done(fail ? .ioError : .ok)
    }

    /// Completes the older half of the held requests (all with `half` false).
    func release(half: Bool) -> Bool {
        let n = half ? (held.count + 1) / 2 : held.count
        guard n > 0 else { return false }
        for (tag, io) in held.prefix(n) {
            fill(io)
            ready.append(Completion(tag: tag, status: .ok))
        }
        held.removeFirst(n)
        return true
    }

    private func fill(_ io: BlockIO) {
        if case let .read(_, buffers, _) = io {
            for piece in buffers { piece.iov_base?.initializeMemory(as: UInt8.self, repeating: 0x5a, count: piece.iov_len) }
        }
    }

    func commit() {}
    func reap(into completions: inout [Completion]) {
        completions += ready
        ready.removeAll()
    }
    var inFlight: Int { held.count }
    func quiesce() { _ = release(half: false) }
    func close() {}
}

let loop: IOThread = {
    do {
        let loop = try IOThread(name: "fuzz-queue")
        loop.adoptCurrentThread()
        return loop
    } catch {
        fatalError("iothread: \(error)")
    }
}()
let quiet = Logger(label: "fuzz-queue") { _ in SwiftLogNoOpLogHandler() }

@main struct Main {
    static func main() {
        _ = loop
        fuzzMain(fuzzOne)
    }
}
