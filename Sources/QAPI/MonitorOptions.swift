/// qemu-storage-daemon's QMP monitor as its command line gives it: `--chardev socket,id=ID,
/// path=PATH,server=on,wait=off` and `--monitor chardev=ID`. We serve one QMP monitor on a unix
/// socket we listen on; everything else a chardev can be is refused with a reason.
public enum MonitorOptions {
    /// The QMP socket path the options describe, or nil when there is no `--monitor`.
    public static func qmpSocket(chardevs: [String], monitors: [String]) throws(OptionError) -> String? {
        var paths: [String: String] = [:]
        for spec in chardevs {
            let (id, path) = try chardev(spec)
            guard paths[id] == nil else { throw OptionError("Duplicate ID '\(id)' for chardev") }
            paths[id] = path
        }
        guard monitors.count <= 1 else {
            throw OptionError("vduse-export serves one QMP monitor: give --monitor once")
        }
        guard let spec = monitors.first else {
            if let id = paths.keys.sorted().first {
                throw OptionError("chardev '\(id)' is not used by a --monitor (vduse-export takes chardevs only for QMP)")
            }
            return nil
        }
        let id = try monitor(spec)
        guard let path = paths[id] else { throw OptionError("chardev \"\(id)\" not found") }
        if let other = paths.keys.sorted().first(where: { $0 != id }) {
            throw OptionError("chardev '\(other)' is not used by a --monitor (vduse-export takes chardevs only for QMP)")
        }
        return path
    }

    /// One `--chardev`: its id and socket path.
    static func chardev(_ spec: String) throws(OptionError) -> (id: String, path: String) {
        var r = try OptionReader(KeyvalParser.parse(expandingFlags(spec), impliedKey: "backend"), syntax: .keyval)
        guard let backend = try r.string("backend") else { throw OptionError("chardev: \"backend\" missing") }
        guard backend == "socket" else {
            throw OptionError("chardev backend '\(backend)' is not supported by vduse-export (use socket,path=PATH,server=on,wait=off)")
        }
        let id = try r.requiredString("id")
        guard ExportChecks.isWellFormedID(id) else { throw OptionError("Parameter 'id' expects an identifier") }
        for unsupported in ["fd", "host", "port", "to", "ipv4", "ipv6", "tls-creds", "websocket", "abstract"] where r.has(unsupported) {
            throw OptionError("chardev '\(id)': '\(unsupported)' is not supported by vduse-export (a unix socket path only)")
        }
        guard let path = try r.string("path"), !path.isEmpty else { throw OptionError("chardev: socket: no host given") }
        guard try r.bool("server") == true else {
            throw OptionError("chardev '\(id)': vduse-export listens for QMP clients: server=on is required")
        }
        // QEMU's default for a server socket is wait=on: hold start-up until a client connects.
        guard try r.bool("wait") == false else {
            throw OptionError("chardev '\(id)': wait=on (the default) is not supported: add wait=off")
        }
        try r.finish()
        return (id, path)
    }

    /// One `--monitor`: the chardev it uses.
    static func monitor(_ spec: String) throws(OptionError) -> String {
        var r = try OptionReader(KeyvalParser.parse(expandingFlags(spec), impliedKey: "chardev"), syntax: .keyval)
        let chardev = try r.requiredString("chardev")
        if let mode = try r.string("mode"), mode != "control" {
            throw OptionError("monitor mode '\(mode)' is not supported by vduse-export (QMP only: mode=control)")
        }
        if try r.bool("pretty") == true { throw OptionError("pretty=on is not supported by vduse-export") }
        _ = try r.string("id")
        try r.finish()
        return chardev
    }

    /// QEMU's old bare flags (`server`, `nowait`, `pretty`), still common in scripts, as keyval.
    static func expandingFlags(_ spec: String) -> String {
        var parts: [String] = []
        var current = ""
        var chars = Array(spec)[...]
        while let c = chars.popFirst() {
            if c == "," {
                if chars.first == "," { chars.removeFirst(); current += ",,"; continue }
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        let flags = ["server": "server=on", "nowait": "wait=off", "wait": "wait=on", "pretty": "pretty=on"]
        // The first part may be the implied key's value (`socket`, a chardev id): left as is.
        return parts.enumerated().map { i, p in i > 0 ? flags[p] ?? p : p }.joined(separator: ",")
    }
}
