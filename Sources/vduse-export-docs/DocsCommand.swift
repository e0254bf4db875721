import ArgumentParser
import Foundation

/// Writes (or checks) the man page and shell completions of a built vduse-export, from its own
/// argument-parser definitions, so the shipped documentation cannot drift from the command.
@main
struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vduse-export-docs",
        abstract: "Generate vduse-export.8 and bash/zsh completions from a vduse-export binary.")

    @Argument(help: "The vduse-export binary.")
    var tool: String

    @Option(help: "Directory of vduse-export.8, vduse-export.bash and _vduse-export.")
    var output: String

    @Option(help: "The Debian changelog whose first entry gives the page's version and date.")
    var changelog: String

    @Flag(help: "Compare with the files in --output instead of writing; exit 1 and name those that differ.")
    var check = false

    func run() throws {
        let (version, date) = try Self.versionAndDate(changelog: changelog)
        let info = try JSONDecoder().decode(ToolInfo.self, from: Data(try Self.capture(tool, ["--experimental-dump-help"]).utf8))
        guard info.serializationVersion == 0 else { throw ValidationError("unknown dump-help version \(info.serializationVersion)") }
        let files = [
            "vduse-export.8": ManPage(tool: info.command, version: version, date: date, extra: PageSections.all).render(),
            "vduse-export.bash": try Self.capture(tool, ["--generate-completion-script", "bash"]),
            "_vduse-export": try Self.capture(tool, ["--generate-completion-script", "zsh"]),
        ]
        var drifted: [String] = []
        for (name, text) in files.sorted(by: { $0.key < $1.key }) {
            let path = (output as NSString).appendingPathComponent(name)
            if check {
                if (try? String(contentsOfFile: path, encoding: .utf8)) != text { drifted.append(path) }
            } else {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
            }
        }
        if !drifted.isEmpty {
            FileHandle.standardError.write(Data("vduse-export-docs: out of date: \(drifted.joined(separator: " ")) (run scripts/gen-docs)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// `pkg (VERSION) …` on the first line, ` -- NAME <MAIL>  RFC-2822 DATE` on the first trailer.
    static func versionAndDate(changelog path: String) throws -> (String, String) {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        guard let first = lines.first, let open = first.firstIndex(of: "("), let close = first.firstIndex(of: ")"),
              let trailer = lines.first(where: { $0.hasPrefix(" -- ") }), let gap = trailer.range(of: ">  ") else {
            throw ValidationError("\(path): not a Debian changelog")
        }
        let upstream = first[first.index(after: open)..<close].split(separator: "-").dropLast().joined(separator: "-")
        let parser = DateFormatter()
        parser.locale = Locale(identifier: "en_US_POSIX")
        parser.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        guard let date = parser.date(from: String(trailer[gap.upperBound...])) else { throw ValidationError("\(path): bad date") }
        let day = DateFormatter()
        day.locale = Locale(identifier: "en_US_POSIX")
        day.timeZone = TimeZone(identifier: "UTC")
        day.dateFormat = "yyyy-MM-dd"
        return (upstream.isEmpty ? String(first[first.index(after: open)..<close]) : upstream, day.string(from: date))
    }

    static func capture(_ executable: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("\(executable) \(arguments.joined(separator: " ")) exited \(p.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }
}
