import Foundation
import Glibc
import Testing
@testable import Kernel
@testable import Server
@testable import Wire

/// The readiness pipe: what a server writes is what `add` reads, over a real pipe.
@Suite struct ReadinessTests {
    @Test func messagesRoundTrip() throws {
        let pipe = try Subprocess.Pipe()
        let channel = ReadinessChannel(fd: dup(pipe.write.rawValue))
        let status = ExportStatus(id: "e", name: "d", nodeName: "n", device: "/dev/vdz", sizeBytes: 512, numQueues: 1,
                                  serial: "s", shuttingDown: false)
        channel.ready(status)
        channel.failed(status: 1, message: "Failed to get \"write\" lock\nIs another process using the image?")
        channel.finish()
        var lines = LineReader(fd: pipe.read.rawValue)
        #expect(try ReadinessMessage.read(&lines) == .ready(status))
        #expect(try ReadinessMessage.read(&lines)
                    == .failed(.init(status: 1, message: "Failed to get \"write\" lock\nIs another process using the image?")))
    }
}
