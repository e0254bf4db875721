import ArgumentParser
import Provisioning
import QAPI
import Wire

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Freeze a running disk's image as a point-in-time copy and go on writing to a new qcow2 overlay over it.",
        discussion: """
            Everything the disk acknowledged is flushed to the image first; then, with no error \
            seen by the disk's users, writes go to a new empty qcow2 overlay whose backing file is \
            that image. The frozen image stays open read-only (locked as a reader, so nobody may \
            write it) and can be copied or backed up while the disk runs. Repeat to grow a chain. \
            The record, `list`, a restarted server and a persistent export's configuration \
            (`add --persist`: the unit serves the overlay at its next start) follow the switch, \
            which is recorded before it takes effect: a server killed before that comes back on \
            the old image (an overlay already created is left unused), after it on the overlay. \
            Without PATH the overlay is NAME-N.qcow2 beside `add --overlay`'s overlays. Prints the frozen image and the new \
            active one. Works through the export's QMP socket (blockdev-snapshot-sync). Exit \
            statuses: 0 done; 1 read-only export, or an image that cannot be snapshotted; 3 PATH \
            exists; 4 the server failed (the disk stays on its image); 6 no such export.
            """)

    @Argument(help: "The export's name (as `list` shows it).")
    var name: String

    @Argument(help: ArgumentHelp("The new overlay (created; must not exist).", valueName: "path"))
    var path: String?

    @Flag(help: "Print {name, frozen, active} as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "Log what happens on stderr.")
    var verbose = false

    func validate() throws {
        try requireNonEmpty(name, "NAME")
        try requireNonEmpty(path, "PATH")
    }

    func run() throws {
        do {
            let result = try Provisioner(logger: Console.logger(verbose: verbose)).snapshot(name: name, path: path)
            Console.out(json ? Console.json(result) : "frozen \(result.frozen)\nactive \(result.active)")
        } catch {
            throw fail(error)
        }
    }
}

struct CommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Merge a running disk's qcow2 overlays into the base of their chain, switch the disk to the base, and delete the overlays.",
        discussion: """
            While the disk stays in use, everything its overlays hold is copied into the base \
            image at the bottom of the chain (writes made meanwhile are tracked and copied \
            again); once the base holds everything the disk switches to it, with no error seen \
            by its users, and the merged overlays are deleted (kept with --keep). The record, \
            `list` (which shows the job and its progress while it runs), a restarted server and \
            a persistent export's configuration follow the switch; a server killed during the job \
            or before the switch is recorded comes back on the overlay (the job is gone; run \
            commit again), one killed after it on the base (the overlays are then kept). Shows a \
            progress bar on a terminal; --json prints one \
            JSON object per step. SIGINT or SIGTERM cancels: the disk stays on its overlay. \
            Works through the export's QMP socket (block-commit, job-complete). Exit statuses: \
            0 done; 1 read-only export, or no overlay to commit; 4 the job failed (the disk stays \
            on its overlay); 6 no such export; 130 cancelled.
            """)

    @Argument(help: "The export's name (as `list` shows it).")
    var name: String

    @Flag(help: "Keep the merged overlays (they are no longer used).")
    var keep = false

    @Option(help: CopyRate.help)
    var speed: CopyRate?

    @Flag(help: "Print one JSON object per progress step, then the result {name, image, merged, deleted}.")
    var json = false

    @Flag(name: .shortAndLong, help: "Log what happens on stderr.")
    var verbose = false

    func validate() throws { try requireNonEmpty(name, "NAME") }

    func run() throws {
        JobInterrupt.install()
        let view = JobProgressView(label: "commit \(name)", json: json)
        do {
            let result = try Provisioner(logger: Console.logger(verbose: verbose))
                .commit(name: name, keep: keep, speed: speed?.bytesPerSecond ?? 0, interrupted: { JobInterrupt.requested }, progress: view.show)
            view.finish()
            Console.out(json ? Console.jsonLine(result) : result.image)
        } catch {
            view.finish()
            throw fail(error)
        }
    }
}

struct MirrorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mirror",
        abstract: "Move a running disk to another file, block device, NBD export or RBD image: copy it while it is in use, then switch to the copy.",
        discussion: """
            The whole disk is copied to TARGET while it stays in use (writes made meanwhile are \
            tracked and copied again); once TARGET holds everything the disk switches to it with \
            no error seen by its users, and the source image file is deleted (kept with \
            --keep-source; a network source is never deleted). TARGET is a file or block device, \
            created (raw, or qcow2 with --format qcow2 or a .qcow2 name) or existing with the \
            disk's size, an existing one that holds data overwritten only with --force; or a \
            network image as `add` takes it, nbd://HOST[:PORT]/EXPORT, \
            nbd+unix:///EXPORT?socket=PATH or rbd:POOL/[NAMESPACE/]IMAGE[:conf=PATH][:id=USER], \
            which must exist with exactly the disk's size (it is written raw and never created \
            here) and, without --force, read as zeros in its first MiB (a network target has no \
            allocation to look at). TARGET is locked (opened) as a writer while the copy runs. \
            The record, `list` (which shows the job and its progress), a restarted server and a \
            persistent export's configuration follow the switch; a server killed during the copy \
            or before the switch is recorded comes back on the source (the job is gone, a TARGET \
            file created here is removed and is never served half-copied), one killed after it \
            on TARGET (the source is then kept). Shows a progress bar on a terminal; --json prints \
            one JSON object per step. SIGINT or SIGTERM cancels: the disk stays on its source and \
            a TARGET file created here is removed. Works through the export's QMP socket \
            (blockdev-add, blockdev-mirror, job-complete). Exit statuses: 0 done; 1 bad target \
            (wrong size or format, the disk's own image, an RBD snapshot), read-only export; 3 \
            TARGET holds data (without --force) or is locked by another writer; 4 the job failed \
            (the disk stays on its source) or a network TARGET cannot be reached; 6 no such \
            export; 130 cancelled.
            """)

    @Argument(help: "The export's name (as `list` shows it).")
    var name: String

    @Argument(help: ArgumentHelp("The file, block device, nbd://, nbd+unix:// or rbd: image to move the disk to.", valueName: "target"))
    var target: String

    @Option(help: "The target's format when it is created: raw or qcow2 (default: qcow2 for a .qcow2 name, else raw; network targets are raw).")
    var format: AddRequest.Format?

    @Flag(help: "Keep the source image file (it is no longer used).")
    var keepSource = false

    @Option(help: CopyRate.help)
    var speed: CopyRate?

    @Flag(help: "Overwrite a TARGET that holds data (for a network TARGET: whose first MiB is not all zeros).")
    var force = false

    @Flag(help: "Print one JSON object per progress step, then the result {name, image, source, sourceDeleted}.")
    var json = false

    @Flag(name: .shortAndLong, help: "Log what happens on stderr.")
    var verbose = false

    func validate() throws {
        try requireNonEmpty(name, "NAME")
        try requireNonEmpty(target, "TARGET")
    }

    func run() throws {
        JobInterrupt.install()
        let view = JobProgressView(label: "mirror \(name)", json: json)
        do {
            let result = try Provisioner.forCommands(logger: Console.logger(verbose: verbose))
                .mirror(name: name, target: target, format: format, keepSource: keepSource, force: force,
                        speed: speed?.bytesPerSecond ?? 0,
                        interrupted: { JobInterrupt.requested }, progress: view.show)
            view.finish()
            Console.out(json ? Console.jsonLine(result) : result.image)
        } catch {
            view.finish()
            throw fail(error)
        }
    }
}

/// `--speed`: a job's copy rate, bytes per second with QEMU's size suffixes; 0 is no limit.
struct CopyRate: ExpressibleByArgument {
    let bytesPerSecond: UInt64

    static let help = ArgumentHelp("Copy at most RATE bytes per second (k, M, G suffixes: powers of 1024); the disk's own I/O is not limited. Default: no limit.", valueName: "rate")

    init?(argument: String) {
        guard let bytes = OptionReader.parseSize(argument), bytes <= UInt64(Int64.max) else { return nil }
        bytesPerSecond = bytes
    }
}
