import ArgumentParser
import Core
import QAPI
import Provisioning
import Foundation

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve exports in the foreground, qemu-storage-daemon style, until SIGINT/SIGTERM or QMP quit.",
        discussion: """
            When each export's disk exists, one line '<export-id> <vduse-name> /dev/vdX' is printed on \
            stdout. On SIGINT/SIGTERM every export is removed (no /dev/vdX, vdpa or VDUSE device is left) \
            and the exit status is 0. Under systemd (Type=notify) READY=1 is sent once all disks exist.
            """)

    @OptionGroup var arguments: ExportArguments

    @Option(help: ArgumentHelp("Offer a QMP control socket at PATH (block-export-add/-del, query-block-exports, block_resize, quit).", valueName: "PATH"))
    var qmp: String?

    @Flag(help: "Record the exports under /run/vduse-export so that `list` and `del` see them.")
    var record = false

    @Option(help: .hidden)
    var readyFd: Int32?

    @Flag(name: .shortAndLong, help: "Log what happens (device messages, queues) on stderr.")
    var verbose = false

    func run() throws {
        let readiness = ReadinessChannel(fd: readyFd)
        let configuration: ServeConfiguration
        do {
            configuration = try arguments.configuration()
        } catch {
            readiness.failed("\(ExitStatus.invalidOptions.rawValue) \(error)")
            throw fail(error)
        }
        let logger = Console.logger(verbose: verbose)
        let outcome: ExportServer.Outcome
        do {
            outcome = try ExportServer.run(configuration, settings: ServeSettings(readiness: readiness, qmpSocket: qmp, record: record),
                                               logger: logger) { status in
                Console.out("\(status.id) \(status.name) \(status.device)")
            }
        } catch {
            readiness.failed("\(ExitStatus.kernel.rawValue) \(error)")
            throw fail(error)
        }
        if outcome == .handedOver { throw ExitCode(ExportServer.handOverExitStatus) }
    }
}
