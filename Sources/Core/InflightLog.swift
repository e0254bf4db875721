import CBarriers
import Glibc
import Kernel
import QAPI

/// The reconnect log of one export: a shared file mapping (under /run/vduse-export, 0600) that
/// says, after the server dies at any instruction, which heads each queue had taken and not yet
/// completed, in which order, and how far the used ring had been published. A new server reads it
/// to resubmit those requests and carry on where the old one stopped (see `QueueLog`).
///
/// Layout (little-endian): a 64-byte header {magic, version, queues, queue size, logical block
/// size, offered features, serial hash, restarts}, then per queue a block of {used index u16,
/// pad, sequence u64} and one 16-byte entry per head {submission counter u64, in-flight u16}.
package final class InflightLog {
    /// What the device was created with; a device whose log says otherwise is not adopted.
    package struct Identity: Equatable, CustomStringConvertible {
        package var queues: Int
        package var queueSize: Int
        package var logicalBlockSize: UInt32
        package var features: UInt64
        package var serialHash: UInt64

        package init(queues: Int, queueSize: Int, logicalBlockSize: UInt32, features: UInt64, serialHash: UInt64) {
            self.queues = queues
            self.queueSize = queueSize
            self.logicalBlockSize = logicalBlockSize
            self.features = features
            self.serialHash = serialHash
        }

        package var description: String {
            "\(queues) queue(s) of \(queueSize), logical block size \(logicalBlockSize), features 0x\(String(features, radix: 16))"
        }
    }

    private static let magic: UInt64 = 0x4C46_4945_5355_4456  // "VDUSEIFL"
    private static let version: UInt32 = 1
    private static let headerSize = 64

    package let file: MappedFile
    package let identity: Identity

    private static func queueStride(_ queueSize: Int) -> Int { (16 + 16 * queueSize + 63) & ~63 }
    private static func length(_ id: Identity) -> Int { headerSize + id.queues * queueStride(id.queueSize) }

    private init(file: MappedFile, identity: Identity) {
        self.file = file
        self.identity = identity
    }

    /// A fresh log for a device being created: everything zero but the header.
    package static func create(path: String, identity: Identity) throws(SystemError) -> InflightLog {
        unlink(path)
        let file = try MappedFile(path: path, length: length(identity), create: true)
        file.base.initializeMemory(as: UInt8.self, repeating: 0, count: file.length)
        let h = file.base
        h.storeBytes(of: magic.littleEndian, as: UInt64.self)
        h.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
        h.storeBytes(of: UInt32(identity.queues).littleEndian, toByteOffset: 12, as: UInt32.self)
        h.storeBytes(of: UInt32(identity.queueSize).littleEndian, toByteOffset: 16, as: UInt32.self)
        h.storeBytes(of: identity.logicalBlockSize.littleEndian, toByteOffset: 20, as: UInt32.self)
        h.storeBytes(of: identity.features.littleEndian, toByteOffset: 24, as: UInt64.self)
        h.storeBytes(of: identity.serialHash.littleEndian, toByteOffset: 32, as: UInt64.self)
        return InflightLog(file: file, identity: identity)
    }

    /// The log a previous server left, nil when there is none or it is not one of ours.
    package static func open(path: String) -> InflightLog? {
        guard let size = MappedFile.size(of: path), size >= headerSize,
              let header = try? MappedFile(path: path, length: headerSize, create: false) else { return nil }
        let h = header.base
        guard UInt64(littleEndian: h.load(as: UInt64.self)) == magic,
              UInt32(littleEndian: h.load(fromByteOffset: 8, as: UInt32.self)) == version else { return nil }
        let identity = Identity(
            queues: Int(UInt32(littleEndian: h.load(fromByteOffset: 12, as: UInt32.self))),
            queueSize: Int(UInt32(littleEndian: h.load(fromByteOffset: 16, as: UInt32.self))),
            logicalBlockSize: UInt32(littleEndian: h.load(fromByteOffset: 20, as: UInt32.self)),
            features: UInt64(littleEndian: h.load(fromByteOffset: 24, as: UInt64.self)),
            serialHash: UInt64(littleEndian: h.load(fromByteOffset: 32, as: UInt64.self)))
        guard identity.queues > 0, identity.queues <= 1024, identity.queueSize > 0, identity.queueSize <= 32768,
              size >= length(identity), let file = try? MappedFile(path: path, length: length(identity), create: false)
        else { return nil }
        return InflightLog(file: file, identity: identity)
    }

    /// How many times a server took this device over after its predecessor was gone.
    package var restarts: UInt32 {
        get { UInt32(littleEndian: file.base.load(fromByteOffset: 40, as: UInt32.self)) }
        set { file.base.storeBytes(of: newValue.littleEndian, toByteOffset: 40, as: UInt32.self) }
    }

    package func queue(_ index: Int) -> QueueLog {
        precondition(index < identity.queues)
        return QueueLog(base: file.base + Self.headerSize + index * Self.queueStride(identity.queueSize),
                        size: identity.queueSize, owner: file)
    }

    /// FNV-1a, to recognise the serial without storing it.
    package static func hash(_ s: String) -> UInt64 { ReconnectLogFile.fnv1a(s) }
}

/// One queue's part of the log. Iothread of the queue only.
///
/// Taking a head: its counter from the queue's sequence, then (release) its in-flight flag.
/// Publishing used elements: the ring's used index first, then clear the flags of the heads in the
/// published elements, then (release) the logged used index. So after a crash:
/// - ring used index == logged: every flagged head was taken and not answered;
/// - ring used index ahead: the crash fell after publishing; the heads in the ring's elements
///   between the two were answered, and their flags are cleared before anything else.
/// Every head a server takes is flagged until published (immediate answers too), so the next
/// avail slot to take is the used index plus the number of flagged heads.
package final class QueueLog {
    private let base: UnsafeMutableRawPointer
    package let size: Int
    private let owner: MappedFile

    package init(base: UnsafeMutableRawPointer, size: Int, owner: MappedFile) {
        self.base = base
        self.size = size
        self.owner = owner
    }

    private var sequence: UInt64 {
        get { base.load(fromByteOffset: 8, as: UInt64.self) }
        set { base.storeBytes(of: newValue, toByteOffset: 8, as: UInt64.self) }
    }
    package var loggedUsedIndex: UInt16 { cvduse_load_acquire_u16(base) }
    private func entry(_ head: Int) -> UnsafeMutableRawPointer { base + 16 + 16 * head }
    package func isInFlight(_ head: Int) -> Bool { cvduse_load_acquire_u16(entry(head) + 8) != 0 }
    package func counter(_ head: Int) -> UInt64 { entry(head).load(as: UInt64.self) }

    /// The server took `head` from the avail ring and will answer it.
    @inline(__always)
    package func taken(_ head: UInt16) {
        guard Int(head) < size else { return }  // cannot be answered anyway
        sequence &+= 1
        entry(Int(head)).storeBytes(of: sequence, as: UInt64.self)
        cvduse_store_release_u16(entry(Int(head)) + 8, 1)
    }

    /// Used elements [old, new) were published (used->idx is `new` in the ring): clear the flags
    /// of their heads, then record `new`.
    package func published(from old: UInt16, to new: UInt16, usedID: (UInt16) -> UInt16) {
        var i = old
        while i != new {
            let head = Int(usedID(i))
            if head < size { cvduse_store_u16(entry(head) + 8, 0) }
            i &+= 1
        }
        cvduse_store_release_u16(base, new)
    }

    /// Reads the log against the ring's used index after a crash: settles a publication the
    /// crash interrupted, and returns where to take the next avail slot and the heads to
    /// resubmit, oldest first.
    package func recover(ringUsedIndex: UInt16, usedID: (UInt16) -> UInt16) -> (lastAvail: UInt16, heads: [UInt16]) {
        if loggedUsedIndex != ringUsedIndex {
            published(from: loggedUsedIndex, to: ringUsedIndex, usedID: usedID)
        }
        let heads = (0..<size).filter(isInFlight).sorted { counter($0) < counter($1) }.map { UInt16($0) }
        return (ringUsedIndex &+ UInt16(truncatingIfNeeded: heads.count), heads)
    }

    /// Device reset: the driver starts its rings anew.
    package func reset() {
        base.initializeMemory(as: UInt8.self, repeating: 0, count: 16 + 16 * size)
    }
}
