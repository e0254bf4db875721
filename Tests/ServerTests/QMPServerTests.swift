import Foundation
import Glibc
import Logging
import Synchronization
import Testing
import TestSupport
@testable import Kernel
@testable import QAPI
@testable import QMP
@testable import Server
@testable import Wire

/// The QMP server's socket and its life: hostile or careless clients and paths, and a stop that
/// waits for what runs.
@Suite(.serialized, .timeLimit(.minutes(1))) struct QMPServerTests {
    static let logger = Logger(label: "qmp-server-test")

    static func socketPath() -> String { (try! TempDir.make()) + "/qmp.sock" }

    static func server(_ path: String) throws -> QMPServer {
        let s = try QMPServer(path: path, logger: Self.logger) { _, _, _ in .object([]) }
        s.start()
        return s
    }

    /// A connected client with a 5 s receive timeout; the greeting is read already.
    final class Client {
        let fd: Int32
        var buffer = Data()

        init(_ path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let address = try #require(UnixSocketAddress(path))
            try #require(address.withSockaddr { connect(fd, $0, $1) } == 0)
            _ = try #require(line(), "no greeting")
        }

        deinit { close(fd) }

        func send(_ text: String) { QMPServer.sendAll(fd, Data(text.utf8)) }

        /// The next line, or nil on timeout or EOF.
        func line() -> String? {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                if let nl = buffer.firstIndex(of: 0x0a) {
                    defer { buffer = Data(buffer[(nl + 1)...]) }
                    return String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                }
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return nil }
                buffer.append(contentsOf: chunk[0..<n])
            }
        }

        /// True when the server closed the connection within the timeout.
        func closedByServer() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n == 0 || n < 0 && errno == ECONNRESET { return true }
                if n < 0 { return false }  // timeout: still open
            }
        }
    }

    /// `"id": 1e999` made the reply unserialisable and it was dropped: the client waited forever.
    /// Ids now go back exactly as they were written.
    @Test func anIdThatCannotBeEchoedStillGetsAReply() throws {
        let path = Self.socketPath()
        let s = try Self.server(path)
        defer { s.stop() }
        let c = try Client(path)
        c.send(#"{"execute": "qmp_capabilities", "id": 1e999}"# + "\n")
        let reply = try #require(c.line(), "no reply")
        #expect(reply.contains("\"return\"") && reply.contains("\"id\": 1e999"))
        c.send(#"{"execute": "qmp_capabilities", "id": 7}"# + "\n")
        #expect(c.line()?.contains("\"id\": 7") == true)
    }

    /// A command without end grew the server's buffer without bound. (Whitespace between
    /// commands is not kept, so only an unfinished value can grow: here a string.)
    @Test func anEndlessCommandIsCutOff() throws {
        let path = Self.socketPath()
        let s = try Self.server(path)
        defer { s.stop() }
        let c = try Client(path)
        c.send(#"{"execute": ""#)
        let megabyte = String(repeating: "a", count: 1 << 20)
        for _ in 0..<3 { c.send(megabyte) }
        #expect(c.line()?.contains("JSON token size limit exceeded") == true)
        #expect(c.closedByServer())
    }

    /// `serve --qmp PATH` unlinked whatever was at PATH.
    @Test func aFileAtTheSocketPathIsKept() throws {
        let path = Self.socketPath()
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: (any Error).self) { _ = try QMPServer(path: path, logger: Self.logger) { _, _, _ in .integer(0) } }
        #expect(FileManager.default.contents(atPath: path) == Data("precious".utf8))
    }

    /// A second server on the same path took the socket away from the first (the loser of two
    /// concurrent adds then removed the winner's socket when it stopped).
    @Test func aLiveSocketIsNotTakenOver() throws {
        let path = Self.socketPath()
        let first = try Self.server(path)
        defer { first.stop() }
        #expect(throws: (any Error).self) { _ = try QMPServer(path: path, logger: Self.logger) { _, _, _ in .integer(0) } }
        _ = try Client(path)  // still the first server's
    }

    /// QMPServer.stop returned while a command still ran (an export it created escaped the
    /// shutdown). Now stop waits for the command.
    @Test func qmpStopWaitsForTheRunningCommand() throws {
        let path = NSTemporaryDirectory() + "/qmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let started = DispatchSemaphore(value: 0)
        let finished = Mutex(false)
        let server = try QMPServer(path: path, logger: Logger(label: "test")) { command, _, _ in
            if command == "slow" {
                started.signal()
                usleep(300_000)
                finished.withLock { $0 = true }
            }
            return .object([])
        }
        server.start()
        let client = Thread {
            _ = try? QMPClient.execute(socket: path, command: "slow", timeout: 5)
        }
        client.start()
        #expect(started.wait(timeout: .now() + 5) == .success)
        server.stop()
        #expect(finished.withLock { $0 }, "stop() returned before the running command finished")
        #expect(!server.acceptLoopRunning)
    }

    /// stop() used to close the listening fd while the accept thread could still be in accept()
    /// on that number. Now the thread has ended before stop() returns.
    @Test func qmpStopEndsTheAcceptThreadBeforeClosing() throws {
        for i in 0..<20 {
            let path = NSTemporaryDirectory() + "/qmp-\(getpid())-\(i).sock"
            let server = try QMPServer(path: path, logger: Logger(label: "test")) { _, _, _ in .object([]) }
            server.start()
            usleep(1000)
            server.stop()
            #expect(!server.acceptLoopRunning)
        }
    }
}
