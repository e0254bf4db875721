/// Decoding and checking virtio-blk requests (virtio 1.x §5.2.6), as QEMU's vduse-blk export
/// answers them. Parsing is pure: it takes a walked descriptor chain and the export's parameters
/// and returns what to do; the queue engine executes it (`writeID` for GET_ID, else the backend).
package enum BlockStatus: UInt8 {
    case ok = 0
    case ioError = 1
    case unsupported = 2
}

/// The request types we serve (`type` in the header, the legacy barrier bit masked off).
package enum BlockRequestType: UInt32 {
    case read = 0
    case write = 1
    case flush = 4
    case getID = 8
    case discard = 11
    case writeZeroes = 13

    /// Legacy barrier flag, ignored when dispatching.
    package static let barrierBit: UInt32 = 0x8000_0000

    /// nil for a type we do not serve (answered UNSUPP).
    package init?(header type: UInt32) { self.init(rawValue: type & ~Self.barrierBit) }
}

/// What the export knows that decides how a request is answered.
package struct BlockExportGeometry {
    package var capacitySectors: UInt64
    package var logicalBlockSize: UInt32
    package var writable: Bool
    package var serial: [UInt8]

    package init(capacitySectors: UInt64, logicalBlockSize: UInt32, writable: Bool, serial: [UInt8]) {
        self.capacitySectors = capacitySectors
        self.logicalBlockSize = logicalBlockSize
        self.writable = writable
        self.serial = serial
    }
}

/// What serving a request takes.
package enum BlockAction: Equatable {
    /// Read `length` bytes at `offset` into the request's data pieces.
    case read(offset: UInt64, length: Int)
    /// Write the request's data pieces at `offset`.
    case write(offset: UInt64, length: Int)
    case flush
    case discard(offset: UInt64, length: UInt64)
    case writeZeroes(offset: UInt64, length: UInt64, unmap: Bool)
    /// Copy the serial into the request's data pieces (`BlockRequest.writeID`), then answer OK.
    case getID
    /// Nothing to do but answer this status (the request was refused).
    case complete(BlockStatus)
}

/// A request framed from its chain: header fields, data pieces, and where the status byte goes.
package struct BlockRequest {
    package var type: UInt32 = 0
    package var sector: UInt64 = 0
    /// Data pieces: driver-to-device after the header (write, discard) or device-to-driver
    /// before the status byte (read, get-id).
    package var data: [MemoryPiece] = []
    package var dataLength: Int = 0
    package var status: UnsafeMutablePointer<UInt8>?
    /// Used length reported back: every device-writable byte, status included.
    package var usedLength: UInt32 = 0

    package enum FramingError: Error {
        /// No device-writable byte to put a status in: the request cannot be answered.
        case noStatus
        /// Fewer than 16 header bytes (the status byte is known and gets IOERR).
        case shortHeader
    }

    package static let headerSize = 16

    package init() {}

    /// Frames `chain`; on `shortHeader`, `status` and `usedLength` are already set.
    package mutating func frame(_ chain: DescriptorChain) throws(FramingError) {
        data.removeAll(keepingCapacity: true)
        dataLength = 0
        status = nil
        usedLength = chain.writableLength
        guard var last = chain.writable.last else { throw .noStatus }
        status = (last.base + (last.length - 1)).assumingMemoryBound(to: UInt8.self)

        // The 16-byte header may be split over several readable pieces.
        var header = (UInt64(0), UInt64(0))
        var got = 0
        var firstData = 0          // index of the first readable piece holding data
        var firstDataSkip = 0      // header bytes at the start of that piece
        withUnsafeMutableBytes(of: &header) { dst in
            for (i, piece) in chain.readable.enumerated() {
                let take = min(piece.length, Self.headerSize - got)
                (dst.baseAddress! + got).copyMemory(from: piece.base, byteCount: take)
                got += take
                firstData = i
                firstDataSkip = take
                if got == Self.headerSize { break }
            }
        }
        guard got == Self.headerSize else { throw .shortHeader }
        withUnsafeBytes(of: &header) { h in
            type = UInt32(littleEndian: h.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            sector = UInt64(littleEndian: h.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        let kind = BlockRequestType(header: type)
        if kind == .read || kind == .getID {
            data.append(contentsOf: chain.writable.dropLast())
            last.length -= 1
            if last.length > 0 { data.append(last) }
        } else {
            var first = chain.readable[firstData]
            if firstDataSkip < first.length {
                first.base += firstDataSkip
                first.length -= firstDataSkip
                data.append(first)
            }
            data.append(contentsOf: chain.readable[(firstData + 1)...])
        }
        dataLength = data.reduce(0) { $0 + $1.length }
    }

    /// Decides how to serve the framed request (QEMU's order of checks, spec §4).
    package func action(for export: BlockExportGeometry) -> BlockAction {
        switch BlockRequestType(header: type) {
        case .read:
            guard inRange(offsetSector: sector, bytes: UInt64(dataLength), export) else { return .complete(.ioError) }
            return .read(offset: sector * 512, length: dataLength)
        case .write:
            guard export.writable else { return .complete(.ioError) }
            guard inRange(offsetSector: sector, bytes: UInt64(dataLength), export) else { return .complete(.ioError) }
            return .write(offset: sector * 512, length: dataLength)
        case .flush:
            return .flush
        case .getID:
            return .getID
        case .discard, .writeZeroes:
            return rangeAction(export)
        case nil:
            return .complete(.unsupported)
        }
    }

    /// Executes `.getID`: the serial, NUL-terminated if it is shorter than 20 bytes, as far as
    /// the data pieces reach. The one place a request writes guest memory outside the backend.
    package func writeID(serial: [UInt8]) {
        var remaining = min(serial.count + 1, dataLength, 20)
        var source = 0
        for piece in data where remaining > 0 {
            let n = min(piece.length, remaining)
            for i in 0..<n {
                piece.base.storeBytes(of: source + i < serial.count ? serial[source + i] : 0, toByteOffset: i, as: UInt8.self)
            }
            source += n
            remaining -= n
        }
    }

    /// DISCARD and WRITE_ZEROES: one 16-byte segment {sector le64, num_sectors le32, flags le32}.
    private func rangeAction(_ export: BlockExportGeometry) -> BlockAction {
        let isDiscard = BlockRequestType(header: type) == .discard
        guard export.writable else { return .complete(.ioError) }
        guard dataLength <= 16 else { return .complete(.unsupported) }  // one segment only
        guard dataLength == 16 else { return .complete(.ioError) }
        var segment = [UInt8](repeating: 0, count: 16)
        var at = 0
        for piece in data {
            segment.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: at).copyMemory(from: piece.base, byteCount: piece.length) }
            at += piece.length
        }
        let (start, count, flags) = segment.withUnsafeBytes { s in
            (UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
             UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        }
        let limit = isDiscard ? VirtioBlockConfig.maxDiscardSectors : VirtioBlockConfig.maxWriteZeroesSectors
        guard count <= limit else { return .complete(.ioError) }
        guard inRange(offsetSector: start, bytes: UInt64(count) * 512, export) else { return .complete(.ioError) }
        let unmapFlag: UInt32 = 1
        guard flags & ~unmapFlag == 0 else { return .complete(.unsupported) }
        if isDiscard {
            guard flags & unmapFlag == 0 else { return .complete(.unsupported) }
            return .discard(offset: start * 512, length: UInt64(count) * 512)
        }
        return .writeZeroes(offset: start * 512, length: UInt64(count) * 512, unmap: flags & unmapFlag != 0)
    }

    /// Offset and length are whole logical blocks and inside the capacity.
    private func inRange(offsetSector: UInt64, bytes: UInt64, _ export: BlockExportGeometry) -> Bool {
        let lbs = UInt64(export.logicalBlockSize)
        guard bytes % 512 == 0, bytes % lbs == 0 else { return false }
        guard offsetSector <= export.capacitySectors else { return false }
        let (offset, overflow) = offsetSector.multipliedReportingOverflow(by: 512)
        guard !overflow, offset % lbs == 0 else { return false }
        return bytes / 512 <= export.capacitySectors - offsetSector
    }
}
