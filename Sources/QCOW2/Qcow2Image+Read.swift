import Glibc

extension Qcow2Image {
    /// Reads `buffers` full from guest offset `offset`.
    public func read(at offset: UInt64, into buffers: [UnsafeMutableRawBufferPointer]) throws {
        let iov = IOVector(buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) })
        try checkRange(offset, iov.count)
        try guarding { try readClamped(at: offset, into: iov, 0, iov.count) }
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try read(at: offset, into: [buffer])
    }

    /// Reads guest bytes into iov[ioOffset...]; past the virtual size they read as zeros (a
    /// backing image shorter than its overlay).
    func readClamped(at offset: UInt64, into iov: IOVector, _ ioOffset: Int, _ length: Int) throws {
        var pos = offset, done = 0
        let inside = offset >= virtualSize ? 0 : Int(min(UInt64(length), virtualSize - offset))
        // Contiguous host runs are read with one preadv.
        var run: (host: UInt64, io: Int, length: Int)?
        func flushRun() throws {
            guard let r = run else { return }
            var pieces = iov.slice(r.io, r.length)
            try file.readv(&pieces, at: r.host)
            run = nil
        }
        while done < inside {
            let inCluster = Int(pos & UInt64(g.clusterSize - 1))
            let n = min(g.clusterSize - inCluster, inside - done)
            let io = ioOffset + done
            switch try mapping(at: pos) {
            case let .data(host, _):
                let h = host + UInt64(inCluster)
                if let r = run, r.host + UInt64(r.length) == h {
                    run!.length += n
                } else {
                    try flushRun()
                    run = (h, io, n)
                }
            case .zero:
                try flushRun()
                iov.zero(io, n)
            case .unallocated:
                try flushRun()
                if let backing { try backing.read(at: pos, into: iov, io, n) } else { iov.zero(io, n) }
            case let .compressed(entry):
                try flushRun()
                let data = try decompress(entry)
                data.withUnsafeBytes { iov.copyIn($0.baseAddress! + inCluster, io, n) }
            }
            pos += UInt64(n)
            done += n
        }
        try flushRun()
        if inside < length { iov.zero(ioOffset + inside, length - inside) }
    }
}
