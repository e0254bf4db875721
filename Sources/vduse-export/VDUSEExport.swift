import ArgumentParser
import Core
import QAPI
import Kernel
import Provisioning
import Foundation
import Logging

@main
struct VDUSEExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vduse-export",
        abstract: "Turn a disk image into a kernel block device (/dev/vdX) through VDUSE, served from user space.",
        discussion: """
            Provisioning: `add IMAGE` prints the new /dev/vdX once it is usable, `list` shows every \
            export, `del NAME` removes one, `resize NAME SIZE` grows or shrinks one, `snapshot NAME` freezes its image under a new overlay, `commit NAME` merges the overlays back, `mirror NAME TARGET` moves it to other storage, `stats [NAME]` shows I/O counters. qemu-storage-daemon compatibility: `serve` takes \
            --object/--blockdev/--export like qemu-storage-daemon and offers a QMP socket; `check` \
            validates the same arguments without touching the kernel. Run as root.

            Exit statuses: 0 success; 1 invalid options (QEMU's messages); 3 conflict (name, or \
            image locked by another writer); \
            4 kernel side failed (no VDUSE, device refused, no disk); 5 del or shrink refused (disk in use); \
            6 no such export; 64 command-line usage error.
            """,
        version: VDUSEExportVersion.string,
        subcommands: [AddCommand.self, ListCommand.self, DelCommand.self, ResizeCommand.self, SnapshotCommand.self, CommitCommand.self, MirrorCommand.self, StatsCommand.self, RestartCommand.self, ServeCommand.self,
                      CheckCommand.self, SuperviseCommand.self]
    )

    static func main() {
        if Personality.current == .qemuStorageDaemon { QSDCommand.runAsQSD() }
        main(nil)
    }
}

/// stderr output and logging shared by the commands: human messages on stderr, results only on stdout.
enum Console {
    static func error(_ message: String) {
        FileHandle.standardError.write(Data("\(Personality.current.program): \(message)\n".utf8))
    }

    static func out(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func logger(verbose: Bool) -> Logger {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = verbose ? .debug : .warning
            return h
        }
        return Logger(label: "vduse-export")
    }

    /// One line of JSON (a progress step).
    static func jsonLine<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(value)) ?? Data(), as: UTF8.self)
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(value)) ?? Data(), as: UTF8.self)
    }
}

/// An empty argument (an unset variable in a script) is a usage error naming it, not the
/// working directory or an export called "".
func requireNonEmpty(_ value: String?, _ what: String) throws {
    if value?.isEmpty == true { throw ValidationError("\(what) must not be empty") }
}

/// Prints the message and exits with the status that kind of failure maps to.
func fail(_ error: Error) -> ExitCode {
    Console.error("\(error)")
    return ExitCode(ExitStatus.of(error).rawValue)
}
