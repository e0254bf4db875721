import Foundation
import Testing

/// resize and --persist as a script sees them, where no kernel is needed.
@Suite struct ShipCLITests {
    @Test func resizeOfAnUnknownExportExits6() throws {
        let r = try CLITests.run(["resize", "no-such-export-here", "1G"])
        #expect(r.status == 6)
        #expect(r.stderr == "vduse-export: no export named 'no-such-export-here'\n")
        #expect(r.stdout.isEmpty)
    }

    @Test func persistWithForegroundIsAUsageError() throws {
        let r = try CLITests.run(["add", CLITests.image, "--persist", "--foreground"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--persist and --foreground do not go together"))
    }

    @Test func resizeIsInTheHelp() throws {
        let r = try CLITests.run(["help", "resize"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: vduse-export resize <name> <size> [--json] [--force] [--verbose]"))
    }
}
