import ArgumentParser
import Kernel
import Provisioning
import Server
import Wire
import Foundation

struct AddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Export an image as /dev/vdX; print the device path once it is usable.",
        discussion: """
            The server runs in the background (its log: /run/vduse-export/NAME.log) unless \
            --foreground. Adding a name that is exported already with the same image prints its \
            device again (exit 0); with another image it fails (exit 3). The same option checks and \
            messages as `serve` apply (exit 1). `add BASE --overlay [PATH]` exports a new qcow2 \
            overlay over BASE; a failed add removes the overlay it created.
            """)

    @Argument(help: "The image: a raw or qcow2 image file, a block device, an NBD URI (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH) or an RBD image (rbd:POOL/[NAMESPACE/]IMAGE[@SNAP][:conf=PATH][:id=USER]). With --overlay: the base (a raw or qcow2 file), which is only read.")
    var image: String

    @Argument(help: ArgumentHelp("With --overlay: where to create the overlay (default: $VDUSE_EXPORT_OVERLAY_DIR or /var/lib/vduse-export/overlays, then NAME.qcow2). Must not exist.", valueName: "overlay-path"))
    var overlayPath: String?

    @Flag(help: "Export a new qcow2 overlay over IMAGE instead of IMAGE itself: writes go to the overlay, IMAGE is opened read-only (with a reader's lock: many overlays can share it). The name defaults to the overlay's file name (to IMAGE's without a PATH). `del` deletes the overlay unless --keep; a restarted server reopens it.")
    var overlay = false

    @Option(help: ArgumentHelp("Image format: raw or qcow2 (default: qcow2 if the file starts with the qcow2 magic, raw otherwise, as qemu-nbd probes).", valueName: "raw|qcow2"))
    var format: AddRequest.Format?

    @Option(help: ArgumentHelp("VDUSE device name (default: the image's file name without extension, characters outside [A-Za-z0-9._-] replaced by '-'). Also the export id, and the /dev/disk/by-vduse/ name.", valueName: "NAME"))
    var name: String?

    @Option(help: ArgumentHelp("Virtqueues, 1..65535 (default: one per online CPU, at most 4). The kernel uses at most one per CPU.", valueName: "N"))
    var numQueues: String?

    @Option(help: ArgumentHelp("Ring size per queue, a power of 2 in 4..1024 (default 256).", valueName: "N"))
    var queueSize: String?

    @Option(help: ArgumentHelp("Logical block size, a power of 2 in 512..2M (default 512; 4k accepted).", valueName: "BYTES"))
    var logicalBlockSize: String?

    @Option(help: ArgumentHelp("Serial shown in /sys/block/vdX/serial and /dev/disk/by-id/virtio-SERIAL (default: the name, cut to 20 bytes).", valueName: "S"))
    var serial: String?

    @Flag(help: "Export read-only (writes fail; /sys/block/vdX/ro is 1).")
    var readOnly = false

    @Flag(help: "Complete every write only once it is on stable storage (default: write cache, FLUSH makes data durable).")
    var writethrough = false

    @Flag(help: "Open the image with O_DIRECT (cache.direct=on).")
    var direct = false

    @Flag(help: "With --read-only: export even while another program (QEMU, another export) writes the image, which QEMU's image locks otherwise refuse (force-share=on). Reads may then see data change underneath.")
    var forceShare = false

    @Option(help: ArgumentHelp("Give up after this many seconds in all (waiting for another add on this host, then for the disk): stop the server and exit 4.", valueName: "SECONDS"))
    var timeout: Double = 120

    @Option(help: ArgumentHelp("Serve the queues in this iothread (default: the main loop). A comma-separated list means multi-threading, which vduse-blk refuses.", valueName: "ID|A,B,…"))
    var iothread: String?

    @Flag(help: "Print a JSON object (name, device, image, size, queues, serial, pid, …) instead of the device path.")
    var json = false

    @Flag(help: "Serve in this process until SIGINT/SIGTERM instead of in the background.")
    var foreground = false

    @Flag(help: "Also keep it across reboots: write /etc/vduse-export/NAME.conf and enable vduse-export@NAME.service, which brings the same name, serial and /dev/disk/by-vduse/NAME back before local file systems are mounted. `del` undoes it.")
    var persist = false

    @Flag(name: .shortAndLong, help: "Log what happens on stderr.")
    var verbose = false

    func validate() throws {
        try requireNonEmpty(image, "IMAGE")
        try requireNonEmpty(overlayPath, "the overlay's path")
        try requireNonEmpty(name, "--name")
        try requireNonEmpty(serial, "--serial")
        if persist && foreground { throw ValidationError("--persist and --foreground do not go together (the unit serves a persistent export)") }
        if overlayPath != nil && !overlay { throw ValidationError("a second argument (the overlay's path) needs --overlay") }
        if overlay && foreground { throw ValidationError("--overlay and --foreground do not go together (`del` deletes the overlay)") }
        if overlay && readOnly { throw ValidationError("--overlay and --read-only do not go together (the overlay takes the writes)") }
        // After a reboot the unit's server has no record of the overlay, so `del` could not delete it.
        if overlay && persist { throw ValidationError("--overlay and --persist do not go together yet (after a reboot `del` would not know the overlay)") }
    }

    func run() throws {
        var request = AddRequest(image: image)
        request.name = name
        request.numQueues = numQueues
        request.queueSize = queueSize
        request.logicalBlockSize = logicalBlockSize
        request.serial = serial
        request.readOnly = readOnly
        request.writethrough = writethrough
        request.direct = direct
        request.forceShare = forceShare
        request.format = format
        request.iothreads = iothread.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? []
        if overlay { request.makeOverlay(at: overlayPath) }
        let logger = Console.logger(verbose: verbose)
        let provisioner = Provisioner.forCommands(logger: logger)
        do {
            if !foreground {
                print(try provisioner.add(request, persist: persist, timeout: timeout))
                return
            }
            let existing = try provisioner.addInForeground(request, timeout: timeout) { configuration, socket in
                try ExportServer.run(configuration, settings: ServeSettings(qmpSocket: socket, record: true), logger: logger) { _ in
                    if let r = provisioner.state.read(request.resolvedName) { print(r) }
                }
            }
            if let existing { print(existing) }
        } catch {
            throw fail(error)
        }
    }

    private func print(_ record: ExportRecord) {
        Console.out(json ? Console.json(record) : record.device)
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List every export on the host: name, device, state (running, dead, unmanaged), pid, image.")

    @Flag(help: "Print a JSON array of objects (the fields of `add --json`, plus state, and job while a snapshot's commit or a mirror runs: {id, type, status, offset, length}).")
    var json = false

    func run() throws {
        let entries = Provisioner(logger: Console.logger(verbose: false)).list()
        let directory = StateDirectory.standard
        let jobs = entries.map { $0.state == .running ? directory.job(of: $0.record) : nil }
        if json {
            Console.out(Console.json(zip(entries, jobs).map { ListEntry(record: $0.record, state: $0.state, job: $1) }))
            return
        }
        for ((r, state), job) in zip(entries, jobs) {
            Console.out(ListEntry.line(r, state: state, job: job))
        }
    }
}

struct DelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "del",
        abstract: "Remove an export: its /dev/vdX, vdpa and VDUSE devices, and its server.",
        discussion: """
            Refuses (exit 5) while the disk or one of its partitions is mounted, held (e.g. by \
            device-mapper) or open in a process, unless --force. An export whose server died is \
            cleaned up. A persistent export (`add --persist`) also loses its configuration and \
            its unit is disabled, even when it is not running. An overlay made by `add --overlay` \
            is deleted once the server is gone, unless --keep. Unknown name: exit 6.
            """)

    @Argument(help: "The export's name (as `list` shows it).")
    var name: String

    func validate() throws { try requireNonEmpty(name, "NAME") }

    @Flag(help: "Delete even while the disk is in use (users then get I/O errors).")
    var force = false

    @Flag(help: "Keep the overlay `add --overlay` created (it is deleted otherwise); its base is named in it as its backing file.")
    var keep = false

    @Flag(name: .shortAndLong, help: "Log what happens on stderr.")
    var verbose = false

    func run() throws {
        let persistent = PersistentExports.standard
        do {
            do {
                try Provisioner.forCommands(logger: Console.logger(verbose: verbose)).delete(name: name, force: force, keep: keep)
            } catch let e as ProvisioningError where e.code == .notFound && persistent.isPersistent(name) {
                // Not running (say its unit failed at boot): only the configuration is left.
            }
            try persistent.forget(name: name)
        } catch {
            throw fail(error)
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

extension AddRequest.Format: ExpressibleByArgument {}
