import Testing
import TestSupport
@testable import Kernel
@testable import Wire

/// The state directory: records and socket paths for every name an export may have.
@Suite struct StateDirectoryTests {
    /// Names of 85-255 bytes: `/run/vduse-export/NAME.sock` did not fit sun_path, and
    /// `NAME.json.tmp` did not fit a file name.
    @Test func longestNamesHaveASocketAndARecord() throws {
        let name = String(repeating: "n", count: 255)
        let standard = StateDirectory(path: "/run/vduse-export")
        #expect(UnixSocketAddress(standard.socketPath(name)) != nil)
        #expect(standard.socketPath("short") == "/run/vduse-export/short.sock")
        #expect(standard.socketPath(name) != standard.socketPath(String(repeating: "m", count: 255)))
        let state = StateDirectory(path: try TempDir.make())
        try state.write(Fixtures.record(name))
        #expect(state.read(name)?.name == name)
        #expect(state.all().map(\.name) == [name])
    }
}
