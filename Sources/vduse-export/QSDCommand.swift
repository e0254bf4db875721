import ArgumentParser
import Foundation
import Server
import Wire

/// Which command line this process takes: its own, or qemu-storage-daemon's when it is run
/// under that name (a link named qemu-storage-daemon; the Debian package ships one in
/// /usr/libexec/vduse-export/), so a script written for QEMU's daemon needs no other change.
enum Personality: Equatable {
    case vduseExport, qemuStorageDaemon

    static let current: Personality =
        URL(fileURLWithPath: CommandLine.arguments.first ?? "").lastPathComponent == "qemu-storage-daemon"
            ? .qemuStorageDaemon : .vduseExport

    /// The name messages start with.
    var program: String { self == .vduseExport ? "vduse-export" : "qemu-storage-daemon" }
}

/// The qemu-storage-daemon personality: `serve`'s options without the verb, devices left for
/// the caller to bind (`vdpa dev add`), nothing printed on stdout, and exit status 1 for every
/// failure, as QEMU's daemon.
struct QSDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu-storage-daemon",
        abstract: "vduse-export with qemu-storage-daemon's command line: vduse-blk exports, bound to the vdpa bus by the caller.")

    @OptionGroup var options: ServeOptions

    @Flag(name: [.customShort("V"), .long], help: "Print the version and exit.")
    var version = false

    func validate() throws {
        if version { return }
        try options.validate()
    }

    func run() throws {
        if version {
            Console.out("vduse-export \(VDUSEExportVersion.string) (qemu-storage-daemon command line; vduse-blk exports only)")
            return
        }
        try options.serve(binding: .caller)
    }

    /// Parses and runs; every failure exits 1 (usage errors too), as qemu-storage-daemon.
    static func runAsQSD() -> Never {
        do {
            var command = try parseAsRoot(nil)
            try command.run()
            Self.exit()
        } catch let code as ExitCode {
            Self.exit(withError: code == .success || code.rawValue == ExportServer.handOverExitStatus ? code : ExitCode(1))
        } catch {
            if exitCode(for: error) == .success { Self.exit(withError: error) }  // --help
            Console.error(message(for: error))
            Self.exit(withError: ExitCode(1))
        }
    }
}
