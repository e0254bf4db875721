import ArgumentParser
import Foundation
import Glibc
import Provisioning
import Server
import Wire

struct RestartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Hand a running export over to a new server process (the binary on disk now), without an error seen by the disk's users.",
        discussion: """
            The running server completes the requests in flight, closes its device and exits; its \
            supervisor starts the new binary, which takes the device over from its reconnect log. \
            Requests issued meanwhile wait; none fails. Prints the device once the new server \
            serves it. Exit statuses: 0 done; 4 the new server did not take over in time; \
            6 no such export (or its server is not running).
            """)

    @Argument(help: "The export's name (as `list` shows it).")
    var name: String

    func validate() throws { try requireNonEmpty(name, "NAME") }

    @Option(help: "Seconds to wait for the new server.")
    var timeout: Double = 60

    @Flag(help: "Print the export's record as JSON.")
    var json = false

    func run() throws {
        let provisioner = Provisioner(logger: Console.logger(verbose: false))
        do {
            let record = try provisioner.restart(name: name, timeout: timeout)
            Console.out(json ? Console.json(record) : record.device)
        } catch {
            throw fail(error)
        }
    }
}

struct SuperviseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervise",
        abstract: "Run a server and start it again whenever it ends without a deliberate stop (used by `add`).",
        shouldDisplay: false)

    @Option(help: "Hand this fd to the first run as its fd 3 (the readiness pipe).")
    var readyFd: Int32?

    @Argument(parsing: .captureForPassthrough, help: "The server's command line, starting with its executable.")
    var command: [String] = []

    func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard !argv.isEmpty else { throw ValidationError("supervise needs a command") }
        throw ExitCode(Supervisor.run(argv: argv, readyFD: readyFd))
    }
}
