import Glibc
import Kernel
import QAPI

/// `query-named-block-nodes`: one node as QEMU's BlockDeviceInfo describes it (the members its
/// schema requires; throttling and thresholds are ours to report as off).
enum QMPNodeInfo {
    static func describe(_ name: String, in c: ServeConfiguration, exportedSize: UInt64?) -> OptionValue? {
        guard let options = c.nodes[name], let backend = c.context.nodes[name] else { return nil }
        let filename = backend.pathDescription
        let format: String = switch options.driver {
        case .raw: "raw"
        case .qcow2: "qcow2"
        default: options.driver.rawValue
        }
        let size = exportedSize ?? virtualSize(backend)
        var image: [(key: String, value: OptionValue)] = [
            ("filename", .string(filename)), ("format", .string(format)), ("virtual-size", .integer(Int(clamping: size))),
        ]
        var depth = 0
        if case let .qcow2(q) = backend.kind, case let .image(path, _) = q.backing {
            image.append(("backing-filename", .string(path)))
            depth = 1
        }
        let zero: OptionValue = .integer(0)
        return .object([
            ("node-name", .string(name)), ("drv", .string(options.driver.rawValue)), ("file", .string(filename)),
            ("ro", .bool(backend.readOnly)), ("encrypted", .bool(false)), ("detect_zeroes", .string("off")),
            ("backing_file_depth", .integer(depth)),
            ("bps", zero), ("bps_rd", zero), ("bps_wr", zero), ("iops", zero), ("iops_rd", zero), ("iops_wr", zero),
            ("image", .object(image)), ("write_threshold", zero),
            ("cache", .object([("writeback", .bool(true)), ("direct", .bool(backend.direct)), ("no-flush", .bool(false))])),
        ])
    }

    /// The size a node has without opening it as a disk: the file's length (a block device's
    /// through lseek), a qcow2 header's virtual size, null-co's size; 0 for network nodes that
    /// no export has opened.
    static func virtualSize(_ backend: BackendSpec) -> UInt64 {
        switch backend.kind {
        case let .file(path): return fileLength(path) ?? 0
        case let .null(size): return size
        case let .qcow2(q): return qcow2Size(q.path) ?? 0
        case .nbd, .rbd: return 0
        }
    }

    private static func fileLength(_ path: String) -> UInt64? {
        guard let fd = try? UniqueFD(open: path, O_RDONLY | O_NONBLOCK) else { return nil }
        let end = lseek(fd.rawValue, 0, SEEK_END)
        return end < 0 ? nil : UInt64(end)
    }

    /// Bytes 24..<32 of a qcow2 header: the virtual size, big-endian.
    private static func qcow2Size(_ path: String) -> UInt64? {
        guard let fd = try? UniqueFD(open: path, O_RDONLY) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 8)
        guard pread(fd.rawValue, &bytes, 8, 24) == 8 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}
