import Foundation
import Testing
import TestSupport
import QAPI
import Provisioning
@testable import Server
@testable import Wire

/// qemu-storage-daemon compatibility: its QMP monitor options, its command line under its name,
/// and the conventions around them (version, help, timestamps, empty arguments).
@Suite struct QSDCompatTests {
    @Test func aSocketChardevWithAMonitorIsTheQMPSocket() throws {
        #expect(try MonitorOptions.qmpSocket(chardevs: ["socket,id=char1,path=/run/q.sock,server=on,wait=off"],
                                             monitors: ["chardev=char1"]) == "/run/q.sock")
        // QEMU's older spelling, still in many scripts, and the implied key of --monitor.
        #expect(try MonitorOptions.qmpSocket(chardevs: ["socket,id=m,path=/a,,b,server,nowait"], monitors: ["m,mode=control"]) == "/a,b")
        #expect(try MonitorOptions.qmpSocket(chardevs: [], monitors: []) == nil)
    }

    @Test(arguments: [
        (["socket,id=c,path=/q,server=on"], ["chardev=c"], "chardev 'c': wait=on (the default) is not supported: add wait=off"),
        (["socket,id=c,fd=3,server=on,wait=off"], ["chardev=c"], "chardev 'c': 'fd' is not supported by vduse-export (a unix socket path only)"),
        (["socket,id=c,path=/q,wait=off"], ["chardev=c"], "chardev 'c': vduse-export listens for QMP clients: server=on is required"),
        (["file,id=c,path=/q"], ["chardev=c"], "chardev backend 'file' is not supported by vduse-export (use socket,path=PATH,server=on,wait=off)"),
        (["socket,id=c,path=/q,server=on,wait=off"], ["chardev=d"], "chardev \"d\" not found"),
        (["socket,id=c,path=/q,server=on,wait=off"], [], "chardev 'c' is not used by a --monitor (vduse-export takes chardevs only for QMP)"),
        (["socket,id=c,path=/q,server=on,wait=off", "socket,id=c,path=/r,server=on,wait=off"], ["chardev=c"], "Duplicate ID 'c' for chardev"),
        (["socket,id=c,path=/q,server=on,wait=off"], ["chardev=c,mode=readline"], "monitor mode 'readline' is not supported by vduse-export (QMP only: mode=control)"),
        (["socket,id=c,path=/q,server=on,wait=off"], ["chardev=c", "chardev=c"], "vduse-export serves one QMP monitor: give --monitor once"),
        (["socket,id=c,path=/q,server=on,wait=off,telnet=on"], ["chardev=c"], "Parameter 'telnet' is unexpected"),
    ] as [([String], [String], String)])
    func monitorOptionsRefusedWithAReason(chardevs: [String], monitors: [String], message: String) {
        #expect { try MonitorOptions.qmpSocket(chardevs: chardevs, monitors: monitors) } throws: { "\($0)" == message }
    }

    @Test func timestampsAreRFC3339AndTheOldNumberStillReads() throws {
        let t = Timestamp(secondsSince1970: 1_796_465_472)
        let json = String(decoding: try JSONEncoder().encode([t]), as: UTF8.self)
        #expect(json == #"["2026-12-05T10:11:12Z"]"#)
        #expect(try JSONDecoder().decode([Timestamp].self, from: Data(json.utf8)) == [t])
        #expect(try JSONDecoder().decode([Timestamp].self, from: Data("[1796465472]".utf8)) == [t])
        #expect(throws: (any Error).self) { try JSONDecoder().decode([Timestamp].self, from: Data(#"["yesterday"]"#.utf8)) }
    }

    @Test func helpServeNamesEveryDriverTheParserTakes() throws {
        let help = try BuiltCommand.run(["help", "serve"]).stdout.replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: #" +"#, with: " ", options: .regularExpression)
        for driver in BlockNodeOptions.drivers {
            #expect(help.contains(" \(driver) ("), "help serve does not describe driver \(driver)")
        }
    }

    @Test func versionIsTheChangelogs() throws {
        let changelog = try String(contentsOf: BuiltCommand.repo.appendingPathComponent("packaging/changelog"), encoding: .utf8)
        // "vduse-export (0.1.0-1) unstable; ...": the upstream version is before the last '-'.
        let debian = try #require(changelog.split(separator: "(").dropFirst().first?.split(separator: ")").first)
        let upstream = String(debian[..<(debian.lastIndex(of: "-") ?? debian.endIndex)])
        let r = try BuiltCommand.run(["--version"])
        #expect(r.status == 0 && r.stdout == upstream + "\n")
    }

    @Test(arguments: [(["add", ""], "IMAGE"), (["add", "x.img", "--name", ""], "--name"), (["del", ""], "NAME"),
                      (["resize", "", "1G"], "NAME"), (["stats", ""], "NAME")])
    func anEmptyArgumentIsAUsageError(args: [String], what: String) throws {
        let r = try BuiltCommand.run(args)
        #expect(r.status == 64 && r.stderr.hasPrefix("Error: \(what) must not be empty\n"))
    }

    /// Under the name qemu-storage-daemon: QSD's options without `serve`, exit 1 for any error.
    @Test func runAsQemuStorageDaemon() throws {
        let binary = try #require(BuiltCommand.binary)
        let dir = NSTemporaryDirectory() + "qsd-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let link = dir + "/qemu-storage-daemon"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: binary.path)
        func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: link)
            p.arguments = args
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        #expect(try run(["-V"]).stdout.hasPrefix("vduse-export "))
        let bogus = try run(["--bogus"])
        #expect(bogus.status == 1 && bogus.stderr.hasPrefix("qemu-storage-daemon: "))
        let missing = try run(["--daemonize", "--blockdev", "driver=file,node-name=f,filename=\(dir)/nosuch"])
        #expect(missing.status == 1 && missing.stderr == "qemu-storage-daemon: Could not open '\(dir)/nosuch': No such file or directory\n")
        let record = try run(["--record"])
        #expect(record.status == 1 && record.stderr.contains("--record needs the devices bound by the server"))
    }
}
