import Foundation
import Glibc
import Testing
import TestSupport
@testable import BlockBackends

/// QEMU's image locks (OFD byte-range locks), between separate opens as between processes.
@Suite struct ImageLockTests {
    /// Two writers on one image corrupted it silently; now the second gets QEMU's message.
    @Test func aSecondWriterIsRefused() throws {
        let image = try TempDir.make() + "/img"
        try #require(FileManager.default.createFile(atPath: image, contents: Data(count: 4096)))
        let writer = try Fixtures.lockImage(image, writable: true)
        #expect {
            close(try Fixtures.lockImage(image, writable: true))
        } throws: { "\($0)" == "Failed to get \"write\" lock\nIs another process using the image [\(image)]?" }
        #expect {
            close(try Fixtures.lockImage(image, writable: false))
        } throws: { "\($0)".hasPrefix("Failed to get shared \"write\" lock") }
        let reader = try Fixtures.lockImage(image, writable: false, forceShare: true)
        close(writer)  // the locks go with the open file
        close(reader)
        let readers = [try Fixtures.lockImage(image, writable: false), try Fixtures.lockImage(image, writable: false)]
        #expect(throws: (any Error).self) { close(try Fixtures.lockImage(image, writable: true)) }
        readers.forEach { close($0) }
        close(try Fixtures.lockImage(image, writable: true))
    }
}
