import Glibc
import Testing
import Errors
import QAPI

/// One error type: its code is the exit status, and the errno stays reachable under any wrapping.
@Suite struct ErrorModelTests {
    @Test func theCodeIsTheExitStatus() {
        // An image that cannot be opened is bad input (1), as `check` says for the same message.
        #expect(ExitStatus.of(ExportError("Could not open '/x': Read-only file system", code: .invalidOptions)) == .invalidOptions)
        #expect(ExitStatus.of(ExportError("Failed to connect to '/run/nbd.sock': Connection refused")) == .kernel)
        #expect(ExitStatus.of(ExportError(.inUse, "export 'web' is in use")) == .inUse)
        #expect(ExitStatus.of(OptionError("queue-size is invalid")) == .invalidOptions)
        #expect(ExitStatus.of(SystemError("open", errno: ENOENT)) == .kernel)
        #expect(ExitStatus.allCases.map(\.rawValue) == [0, 1, 3, 4, 5, 6, 130])
    }

    @Test func errnoIsFoundThroughTheCauseChain() {
        let open = SystemError("open", errno: EROFS)
        let inner = ExportError("Could not open '/x'", because: open, code: .invalidOptions)
        #expect(inner.message == "Could not open '/x': Read-only file system")
        let outer = ExportError(.kernel, "cannot resize 'web': \(inner)", cause: inner)
        #expect(outer.errno == .readOnlyFileSystem)
        #expect(ExportError("no cause").errno == nil)
    }
}
