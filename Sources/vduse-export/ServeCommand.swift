import ArgumentParser
import Core
import QAPI
import Kernel
import Provisioning
import Foundation

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve exports, qemu-storage-daemon style, until SIGINT/SIGTERM or QMP quit.",
        discussion: """
            When each export's disk exists, one line '<export-id> <vduse-name> /dev/vdX' is printed on \
            stdout ('-' for the device with --no-bind). On SIGINT/SIGTERM every export is removed (no \
            /dev/vdX, vdpa or VDUSE device is left) and the exit status is 0. Under systemd \
            (Type=notify) READY=1 is sent once all disks exist. Run as 'qemu-storage-daemon' (a link \
            to this program of that name), it takes these options without the 'serve' word and \
            behaves as --no-bind.
            """)

    @OptionGroup var options: ServeOptions

    func validate() throws { try options.validate() }

    func run() throws { try options.serve(binding: options.noBind ? .caller : .server) }
}

/// `serve`'s options, which are also the whole command line of the qemu-storage-daemon
/// personality.
struct ServeOptions: ParsableArguments {
    @OptionGroup var arguments: ExportArguments

    @Option(help: ArgumentHelp("Offer a QMP control socket at PATH (QMP as QEMU speaks it: run-time blockdev-add/object-add/block-export-add and their -del, queries, block_resize, quit; docs/options.md lists them).", valueName: "PATH"))
    var qmp: String?

    @Option(name: .customLong("chardev"), help: ArgumentHelp(
        "qemu-storage-daemon's QMP socket: 'socket,id=ID,path=PATH,server=on,wait=off', used by --monitor chardev=ID (the same as --qmp PATH). Only unix socket paths that we listen on.",
        valueName: "socket,id=ID,path=PATH,server=on,wait=off"))
    var chardevs: [String] = []

    @Option(name: .customLong("monitor"), help: ArgumentHelp(
        "A QMP monitor on the --chardev ID: '[chardev=]ID[,mode=control]'. At most one.", valueName: "chardev=ID"))
    var monitors: [String] = []

    @Flag(help: "Run in the background: exit 0 once every export's device exists (with --no-bind: once it is created and served), or non-zero with the error. The daemon's stdin, stdout and stderr are /dev/null; it changes to / once running.")
    var daemonize = false

    @Option(help: ArgumentHelp("Write the server's pid to PATH once it runs, remove it at exit. Refused if another running server holds PATH (a lock on the file, as qemu-storage-daemon).", valueName: "PATH"))
    var pidfile: String?

    @Flag(help: "Do not bind the devices to the vdpa bus: create and serve each VDUSE device and leave `vdpa dev add name NAME mgmtdev vduse` to the caller, as qemu-storage-daemon does. At exit a device still bound is unbound first.")
    var noBind = false

    @Flag(help: "Record the exports under /run/vduse-export so that `list` and `del` see them.")
    var record = false

    @Option(help: .hidden)
    var readyFd: Int32?

    @Flag(name: .shortAndLong, help: "Log what happens (device messages, queues) on stderr.")
    var verbose = false

    func validate() throws {
        if record && (noBind || Personality.current == .qemuStorageDaemon) {
            throw ValidationError("--record needs the devices bound by the server (list and del work with /dev/vdX): not with --no-bind")
        }
        if qmp != nil && !monitors.isEmpty { throw ValidationError("--qmp and --monitor both give the QMP socket: use one") }
        if pidfile?.isEmpty == true { throw ValidationError("--pidfile needs a path") }
    }

    /// Runs the server (or, with --daemonize, starts it as a daemon and waits until it runs).
    func serve(binding: ExportManager.Binding) throws {
        if daemonize && readyFd == nil { try startDaemon() }
        let readiness = ReadinessChannel(fd: readyFd)
        let configuration: ServeConfiguration
        let qmpSocket: String?
        do {
            // A recorded export may have moved off the image its arguments name (which a commit
            // or mirror may have deleted): that image is checked as the one served now.
            configuration = try arguments.configuration(probe: record ? RecordKeeper.switchedProbe(state: .standard) : ServeConfiguration.probeOpen)
            qmpSocket = try qmp ?? MonitorOptions.qmpSocket(chardevs: chardevs, monitors: monitors)
        } catch {
            readiness.failed(status: ExitStatus.invalidOptions.rawValue, message: "\(error)")
            throw fail(error)
        }
        var settings = ServeSettings(readiness: readiness, qmpSocket: qmpSocket.map(Self.absolute), record: record)
        settings.binding = binding
        settings.pidFile = pidfile
        settings.daemonized = daemonize
        let logger = Console.logger(verbose: verbose)
        let outcome: ExportServer.Outcome
        do {
            outcome = try ExportServer.run(configuration, settings: settings, logger: logger) { status in
                guard Personality.current == .vduseExport else { return }
                Console.out("\(status.id) \(status.name) \(status.device.isEmpty ? "-" : status.device)")
            }
        } catch {
            readiness.failed(status: ExitStatus.of(error).rawValue, message: "\(error)")
            throw fail(error)
        }
        if outcome == .handedOver { throw ExitCode(ExportServer.handOverExitStatus) }
    }

    /// The parent's side of --daemonize: never returns.
    private func startDaemon() throws -> Never {
        switch Daemonize.start(arguments: CommandLine.arguments) {
        case let .running(_, exports):
            if Personality.current == .vduseExport {
                for s in exports { Console.out("\(s.id) \(s.name) \(s.device.isEmpty ? "-" : s.device)") }
            }
            throw ExitCode.success
        case let .failed(status, message):
            Console.error(message)
            throw ExitCode(status)
        }
    }

    /// The daemon changes to `/`: paths it keeps using must not be relative.
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}
