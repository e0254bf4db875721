import ArgumentParser
import QAPI

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Run every option check of `serve` without touching the kernel.",
        discussion: "Exit 0 and print the normalised options as JSON, or exit 1 with QEMU's message on stderr.")

    @OptionGroup var arguments: ExportArguments

    func run() throws {
        do {
            let configuration = try arguments.configuration()
            Console.out(Console.json(configuration.plan))
        } catch {
            throw fail(error)
        }
    }
}
