import Foundation
import Testing
import TestSupport

/// The built binary as a script sees it: exit status and exact stderr of `check`, `resize` and
/// `add --persist` where no kernel is needed.
@Suite struct CLITests {
    static let image: String = {
        let path = NSTemporaryDirectory() + "cli-test.img"
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: 1 << 20))
        return path
    }()

    static var nodes: [String] {
        ["--blockdev", "driver=file,node-name=f0,filename=\(image)", "--blockdev", "driver=raw,node-name=n0,file=f0",
         "--object", "iothread,id=io0"]
    }

    @Test(arguments: [
        ("type=vduse-blk,id=e0,node-name=n0,name=cli0,writable=on,iothread=io0", Int32(0), ""),
        ("type=vduse-blk,id=e0,node-name=n0,name=cli0,queue-size=3", 1, "vduse-export: queue-size is invalid\n"),
        ("type=vduse-blk,id=e0,node-name=n0,name=cli0,iothread.0=io0", 1, "vduse-export: vduse-blk export does not support multi-threading\n"),
        ("type=vduse-blk,id=e0,node-name=n0,name=cli0,iothread.0=io0,fixed-iothread=on", 1, "vduse-export: Cannot use fixed-iothread for a multi-threaded export\n"),
        ("type=vduse-blk,id=e0,node-name=n0,name=cli0,iothread.0=io0,iothread.1=nope", 1, "vduse-export: iothread \"nope\" not found\n"),
        (#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"cli0","iothread":[]}"#, 1, "vduse-export: The set of I/O threads must not be empty\n"),
        ("type=vduse-blk,id=#e,node-name=n0,name=cli0", 1, "vduse-export: Invalid block export id\n"),
        ("type=vduse-blk,id=e0,node-name=zz,name=cli0", 1, "vduse-export: Cannot find device='' nor node-name='zz'\n"),
        ("type=vduse-blk,id=e0,node-name=n0,name=cli0,writable=perhaps", 1, "vduse-export: Parameter 'writable' expects 'on' or 'off'\n"),
        ("type=vduse-blk,id=e0,node-name=n0,name=", 1, "vduse-export: failed to create vduse device: name is empty\n"),
    ] as [(String, Int32, String)])
    func check(export: String, status: Int32, stderr: String) throws {
        let r = try BuiltCommand.run(["check"] + Self.nodes + ["--export", export])
        #expect(r.status == status)
        #expect(r.stderr == stderr)
        if status == 0 {
            #expect(r.stdout.contains("\"num-queues\" : 1"))
            #expect(r.stdout.contains("\"iothread\" : \"io0\""))
        } else {
            #expect(r.stdout.isEmpty)
        }
    }

    @Test func serveReportsOptionErrorsBeforeTouchingTheKernel() throws {
        // On a host without VDUSE the option error wins over the missing driver.
        let r = try BuiltCommand.run(["serve"] + Self.nodes + ["--export", "type=vduse-blk,id=e0,node-name=n0,name=cli0,num-queues=0"])
        #expect(r.status == 1)
        #expect(r.stderr == "vduse-export: num-queues must be greater than 0\n")
    }

    @Test func missingFileIsReportedAsQEMUDoes() throws {
        let r = try BuiltCommand.run(["check", "--blockdev", "driver=file,node-name=f0,filename=/nonexistent/x.img"])
        #expect(r.status == 1)
        #expect(r.stderr == "vduse-export: Could not open '/nonexistent/x.img': No such file or directory\n")
    }

    @Test func usageErrorsUseTheParsersStatus() throws {
        let r = try BuiltCommand.run(["check", "--no-such-option"])
        #expect(r.status == 64)
    }

    // resize and --persist as a script sees them, where no kernel is needed.
    @Test func resizeOfAnUnknownExportExits6() throws {
        let r = try BuiltCommand.run(["resize", "no-such-export-here", "1G"])
        #expect(r.status == 6)
        #expect(r.stderr == "vduse-export: no export named 'no-such-export-here'\n")
        #expect(r.stdout.isEmpty)
    }

    @Test func persistWithForegroundIsAUsageError() throws {
        let r = try BuiltCommand.run(["add", Self.image, "--persist", "--foreground"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--persist and --foreground do not go together"))
    }

    @Test func resizeIsInTheHelp() throws {
        let r = try BuiltCommand.run(["help", "resize"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: vduse-export resize <name> <size> [--json] [--force] [--verbose]"))
    }
}
