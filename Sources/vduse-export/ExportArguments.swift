import ArgumentParser
import QAPI

/// qemu-storage-daemon's arguments, shared by `serve` and `check`.
struct ExportArguments: ParsableArguments {
    @Option(name: .customLong("object"), help: ArgumentHelp(
        "An iothread: 'iothread,id=ID' (or JSON {\"qom-type\":\"iothread\",\"id\":\"ID\"}). Repeatable.",
        valueName: "iothread,id=ID"))
    var objects: [String] = []

    @Option(name: .customLong("blockdev"), help: ArgumentHelp(
        // Generated from the drivers the parser takes, so the two cannot differ.
        "A block node, keyval or JSON. Drivers: \(BlockNodeOptions.Driver.help). Every driver: node-name=NAME "
            + "(required, at most 31 bytes), read-only=on|off (default off), force-share=on|off (default off, on only "
            + "with read-only=on: do not refuse other writers of the image, QEMU's image locks). Repeatable.",
        valueName: "driver=…,node-name=…"))
    var blockdevs: [String] = []

    @Option(name: .customLong("export"), help: ArgumentHelp(
        """
        An export, keyval (type=vduse-blk,id=…) or JSON. Keys: type (vduse-blk), id (required: a letter, \
        then letters, digits, - . _), node-name (required), name (required: the VDUSE device name, \
        [A-Za-z0-9._-], at most 255 bytes), writable=on|off (default off), writethrough=on|off \
        (default off: write cache, FLUSH makes data durable), num-queues (1..65535, default 1), \
        queue-size (power of 2 in 4..1024, default 256), logical-block-size (power of 2 in \
        512..2M, default 512; suffixes like 4k), serial (default empty; first 20 bytes are \
        served), iothread=ID (default: the main loop; a list iothread.0=A,iothread.1=B is \
        multi-threading, which vduse-blk refuses as QEMU does), fixed-iothread=on|off (default \
        off), allow-inactive=on|off (default off; vduse-blk refuses on). Repeatable.
        """, valueName: "type=vduse-blk,…"))
    var exports: [String] = []

    /// Objects, then block nodes, then exports, each in command-line order.
    func configuration(probe: @escaping @Sendable (String, Bool) -> ServeConfiguration.OpenResult = ServeConfiguration.probeOpen)
        throws(OptionError) -> ServeConfiguration {
        try ServeConfiguration.build(objects: objects, blockdevs: blockdevs, exports: exports,
                                     into: ServeConfiguration(openProbe: probe))
    }
}
