import Foundation
import Testing
import TestSupport

/// The committed man page and completions are what vduse-export-docs makes from the built
/// binary's parser definitions, and the page documents every visible option of every command.
@Suite struct DocsTests {
    static let repo = BuiltCommand.repo
    static var bin: URL { BuiltCommand.binary!.deletingLastPathComponent() }

    @Test func committedDocsMatchTheParser() throws {
        _ = try #require(BuiltCommand.binary, "build first (swift build)")
        let p = Process()
        p.executableURL = Self.bin.appendingPathComponent("vduse-export-docs")
        p.arguments = [Self.bin.appendingPathComponent("vduse-export").path, "--output", Self.repo.appendingPathComponent("packaging/generated").path,
                       "--changelog", Self.repo.appendingPathComponent("packaging/changelog").path, "--check"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "packaging/generated is out of date: run scripts/gen-docs")
    }

    @Test func everyVisibleOptionIsInThePage() throws {
        let help = try BuiltCommand.run(["--experimental-dump-help"])
        let info = try #require(try JSONSerialization.jsonObject(with: Data(help.stdout.utf8)) as? [String: Any])
        let page = try String(contentsOf: Self.repo.appendingPathComponent("packaging/generated/vduse-export.8"), encoding: .utf8)
        let commands = try #require((info["command"] as? [String: Any])?["subcommands"] as? [[String: Any]])
        #expect(commands.count >= 6)
        // help and hidden commands (shouldDisplay false) are not in the page.
        for command in commands where command["commandName"] as? String != "help" && command["shouldDisplay"] as? Bool != false {
            let name = try #require(command["commandName"] as? String)
            #expect(page.contains("\n.SS \(name)\n"), "no section for \(name)")
            for argument in command["arguments"] as? [[String: Any]] ?? [] where argument["shouldDisplay"] as? Bool == true {
                for n in argument["names"] as? [[String: Any]] ?? [] where n["kind"] as? String == "long" && !["help", "version"].contains(n["name"] as? String) {
                    let spelled = "\\-\\-" + (n["name"] as! String).replacingOccurrences(of: "-", with: "\\-")
                    #expect(page.contains("\\fB\(spelled)\\fR"), "\(name) --\(n["name"]!) missing")
                }
            }
        }
        for section in ["EXIT STATUS", "FILES", "EXAMPLES", "ENVIRONMENT"] { #expect(page.contains("\n.SH \(section)\n")) }
        #expect(!page.contains("ready\\-fd"), "hidden options stay hidden")
    }

    @Test func bashCompletionLoads() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "source \"$1\" && complete -p vduse-export", "bash", Self.repo.appendingPathComponent("packaging/generated/vduse-export.bash").path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("vduse-export"))
    }
}
