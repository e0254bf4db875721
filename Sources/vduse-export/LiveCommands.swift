import ArgumentParser
import Core
import Provisioning

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Freeze a running disk's image as a point-in-time copy and go on writing to a new qcow2 overlay over it.",
        discussion: """
            Everything the disk acknowledged is flushed to the image first; then, with no error \
            seen by the disk's users, writes go to a new empty qcow2 overlay whose backing file is \
            that image. The frozen image stays open read-only (locked as a reader, so nobody may \
            write it) and can be copied or backed up while the disk runs. Repeat to grow a chain. \
            The record, `list` and a restarted server follow the switch. Without PATH the overlay \
            is NAME-N.qcow2 beside `add --overlay`'s overlays. Prints the frozen image and the new \
            active one. Works through the export's QMP socket (blockdev-snapshot-sync). Exit \
            statuses: 0 done; 1 read-only export or an image that cannot be snapshotted; 3 PATH \
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
