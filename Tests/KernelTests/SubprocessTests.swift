import Testing
@testable import Kernel

/// Running a helper program (systemctl, qemu-img) and keeping what it said.
@Suite struct SubprocessTests {
    @Test func capturesStatusAndStderr() throws {
        let r = try Subprocess.runCapturingStderr("/bin/sh", ["-c", "echo out; echo oops >&2; exit 3"])
        #expect(r.status == 3)
        #expect(r.stderr == "oops\n")
    }

    @Test func aMissingProgramThrows() {
        #expect(throws: SystemError.self) { try Subprocess.runCapturingStderr("/nonexistent/systemctl", []) }
    }
}
