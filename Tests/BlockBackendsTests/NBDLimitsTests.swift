import Glibc
import Testing
@testable import BlockBackends

/// What the client makes of an NBD server's handshake numbers, and how a request is cut into
/// NBD commands: the pure part of the NBD backend that fuzz-nbd also drives.
struct NBDLimitsTests {
    func facts(readOnly: Bool = false, trim: Bool = true, zero: Bool = true, minimum: UInt64 = 0, preferred: UInt64 = 0,
               maximum: UInt64 = 0) -> NBDServerFacts {
        NBDServerFacts(size: 1 << 30, readOnly: readOnly, canFlush: true, canTrim: trim, canZero: zero, canFastZero: false,
                       canMultiConn: false, minimum: minimum, preferred: preferred, maximum: maximum)
    }

    @Test func aServerThatSaysNothingGets32MiBCommands() throws {
        let l = try NBDLimits(server: facts(), writable: true, logicalBlockSize: 512)
        #expect(l.minimumBlock == 1)
        #expect(l.maxChunk == 32 << 20)
        #expect(l.maxZero == UInt64(Int32.max) - UInt64(Int32.max) % 4096)
        #expect(l.canTrim && l.canZero && l.canFlush)
    }

    @Test func theServersMaximumIsRoundedDownToItsMinimum() throws {
        let l = try NBDLimits(server: facts(minimum: 4096, maximum: (1 << 20) + 100), writable: true, logicalBlockSize: 4096)
        #expect(l.maxChunk == 1 << 20)
        // A maximum below the minimum (a broken server): one minimum block per command.
        let tiny = try NBDLimits(server: facts(minimum: 4096, maximum: 100), writable: true, logicalBlockSize: 4096)
        #expect(tiny.maxChunk == 4096)
        let big = try NBDLimits(server: facts(minimum: 65536), writable: true, logicalBlockSize: 65536)
        #expect(big.maxZero == UInt64(Int32.max) - UInt64(Int32.max) % 65536)
    }

    @Test func aReadOnlyExportOrALargerMinimumIsRefused() {
        #expect(throws: (any Error).self) { try NBDLimits(server: facts(readOnly: true), writable: true, logicalBlockSize: 512) }
        do {
            _ = try NBDLimits(server: facts(readOnly: true), writable: true, logicalBlockSize: 512)
        } catch {
            #expect(error.errno.rawValue == EROFS)
        }
        do {
            _ = try NBDLimits(server: facts(minimum: 4096), writable: false, logicalBlockSize: 512)
            Issue.record("a minimum block above the logical block size was accepted")
        } catch {
            #expect(error.errno.rawValue == EINVAL)
            #expect("\(error)".contains("logical-block-size=4096"))
        }
        // Read-only use of a read-only export is fine, and never trims.
        #expect((try? NBDLimits(server: facts(readOnly: true), writable: false, logicalBlockSize: 512))?.canTrim == false)
    }

    @Test func aRequestIsCutIntoConsecutiveCommands() {
        var plan = NBDChunks(offset: 4096, length: 10 << 20, most: 4 << 20)
        var pieces: [UInt64] = []
        var at: UInt64 = 4096
        while let (start, n) = plan.next() {
            #expect(start == at)
            pieces.append(n)
            at += n
        }
        #expect(pieces == [4 << 20, 4 << 20, 2 << 20])
        var empty = NBDChunks(offset: 512, length: 0, most: 4096)
        #expect(empty.next() == nil)
    }
}
