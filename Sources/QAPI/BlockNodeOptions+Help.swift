extension BlockNodeOptions.Driver {
    /// What `--blockdev` takes for this driver, for `help serve`. An exhaustive switch: a new
    /// driver does not compile until it is described here.
    public var helpSummary: String {
        switch self {
        case .file:
            return "file (filename=PATH of a regular file; cache.direct=on|off, default off = page cache; "
                + "aio=threads|native|io_uring, accepted for compatibility, native needs cache.direct=on)"
        case .hostDevice: return "host_device (as file, for a block or character device)"
        case .raw: return "raw (file=NODE-NAME of an earlier --blockdev)"
        case .qcow2:
            return "qcow2 (file=NODE-NAME of a file node; backing=NODE-NAME or empty for none, default: the image's own; "
                + "l2-cache-size=BYTES, default 32M; discard=ignore|unmap, default ignore)"
        case .nullCo: return "null-co (size=BYTES, an integer, default 1073741824: reads zeros, drops writes)"
        case .nbd:
            return "nbd (server.type=inet with server.host and server.port, or server.type=unix with server.path; "
                + "export=NAME, default the server's default export; reconnect-delay=SECONDS, default 30; "
                + "x-request-timeout=SECONDS, default 30, 0 = wait forever)"
        case .rbd:
            return "rbd (pool=POOL, image=IMAGE; namespace=NS, snapshot=SNAP (read-only), conf=PATH, user=ID)"
        }
    }

    /// Every driver's summary, in the order of the table.
    public static var help: String { allCases.map(\.helpSummary).joined(separator: "; ") }
}
