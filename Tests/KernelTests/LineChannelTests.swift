import Foundation
import Glibc
import Testing
@testable import Kernel

/// The newline framing shared by the QMP client and the readiness pipe, over a real pipe.
@Suite struct LineChannelTests {
    @Test func linesArriveWholeHoweverTheyAreCut() throws {
        let pipe = try Subprocess.Pipe()
        var lines = LineReader(fd: pipe.read.rawValue)
        #expect(writeAll(pipe.write.rawValue, Data("{\"a\":".utf8)))
        #expect(writeAll(pipe.write.rawValue, Data("1}\r\n{\"b\":2}\nlast".utf8)))
        #expect(try lines.next().map { String(decoding: $0, as: UTF8.self) } == "{\"a\":1}")
        #expect(try lines.next().map { String(decoding: $0, as: UTF8.self) } == "{\"b\":2}")
        let reader = pipe.readEnd()  // the write end closes: EOF after the unterminated rest
        #expect(try lines.next().map { String(decoding: $0, as: UTF8.self) } == "last")
        #expect(try lines.next() == nil)
        reader.close()
    }

    @Test func aSilentWriterTimesOut() throws {
        let pipe = try Subprocess.Pipe()
        var lines = LineReader(fd: pipe.read.rawValue)
        let start = Deadline.now
        #expect(throws: SystemError("read line", errno: ETIMEDOUT)) { try lines.next(until: .after(seconds: 0.2)) }
        #expect(Deadline.now.seconds(since: start) >= 0.2)
    }
}
