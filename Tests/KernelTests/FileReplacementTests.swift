import Foundation
import Glibc
import Testing
@testable import Kernel

@Suite struct FileReplacementTests {
    private static func tempDir() -> String {
        let dir = NSTemporaryDirectory() + "/replace-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(dir, 0o700)
        return dir
    }

    @Test func replacesTheFileWithTheModeAsked() throws {
        let dir = Self.tempDir()
        let path = dir + "/f"
        try "old".write(toFile: path, atomically: false, encoding: .utf8)
        try FileReplacement.replace(path, temporary: dir + "/.f.tmp", mode: 0o600, with: Data("new".utf8))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new")
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(access(dir + "/.f.tmp", F_OK) != 0, "the temporary file was left behind")
    }

    /// A directory that is not there: the temporary file cannot be created, and that is what
    /// the failure says (with its errno), the target untouched.
    @Test func aMissingDirectoryFailsAtCreate() {
        let dir = Self.tempDir()
        #expect {
            try FileReplacement.replace(dir + "/no/f", temporary: dir + "/no/.f.tmp", mode: 0o600, with: Data("x".utf8))
        } throws: { error in
            guard case let .create(e)? = error as? FileReplacement.Failure else { return false }
            return e.errno == .noSuchFileOrDirectory
        }
    }

    /// The rename cannot replace a directory: the failure is a write-stage one and the temporary
    /// file is removed again.
    @Test func aFailedRenameRemovesTheTemporaryFile() {
        let dir = Self.tempDir()
        mkdir(dir + "/d", 0o700)
        mkdir(dir + "/d/inside", 0o700)
        #expect {
            try FileReplacement.replace(dir + "/d", temporary: dir + "/.d.tmp", mode: 0o600, with: Data("x".utf8))
        } throws: { error in
            guard case .write? = error as? FileReplacement.Failure else { return false }
            return true
        }
        #expect(access(dir + "/.d.tmp", F_OK) != 0, "the temporary file was left behind")
    }
}
