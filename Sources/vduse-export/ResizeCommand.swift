import ArgumentParser
import Provisioning

struct ResizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize",
        abstract: "Grow or shrink an export: the image, then the disk; returns once the kernel sees the new capacity.",
        discussion: """
            SIZE is in bytes, or with a k, M, G, T or P suffix (powers of 1024); +SIZE grows by and \
            -SIZE shrinks by that much (write `-- -1G`, or the parser takes it for an option). \
            Prints the device and its new size in bytes. A shrink below the end of a mounted or \
            held partition is refused (exit 5) unless --force; a file system on the whole disk \
            is taken to fill it, so while it is mounted every shrink is refused. Works through \
            the export's QMP socket (block_resize); image files only, not block devices.
            """)

    @Argument(help: "The export's name (as `list` shows it).")
    var name: String

    @Argument(help: ArgumentHelp("The new size: BYTES, +BYTES or -BYTES, with an optional k, M, G, T or P suffix.", valueName: "size"))
    var size: String

    func validate() throws { try requireNonEmpty(name, "NAME") }

    @Flag(help: "Print the export as JSON (the fields of `add --json`, with the new size).")
    var json = false

    @Flag(help: "Shrink even below the end of a mounted or held file system (it will see I/O errors).")
    var force = false

    @Flag(name: .shortAndLong, help: "Log what happens on stderr.")
    var verbose = false

    func run() throws {
        do {
            let record = try Provisioner(logger: Console.logger(verbose: verbose)).resize(name: name, to: size, force: force)
            Console.out(json ? Console.json(record) : "\(record.device) \(record.size)")
        } catch {
            throw fail(error)
        }
    }
}
