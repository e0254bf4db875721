import Kernel
import QAPI
import Foundation
import Glibc

/// `vduse-export add IMAGE …`: the friendly form of one export. It is turned into the same
/// qemu-storage-daemon style arguments `serve` takes, so both run the very same checks.
public struct AddRequest: Sendable, Equatable {
    public var image: String
    public var name: String?
    public var numQueues: String?
    public var queueSize: String?
    public var logicalBlockSize: String?
    public var serial: String?
    public var readOnly = false
    public var writethrough = false
    public var direct = false
    /// `force-share=on`: export read-only even while another program writes the image.
    public var forceShare = false
    public enum Format: String, Sendable, CaseIterable {
        case raw, qcow2
    }
    /// `--format`; nil = probed from the image's first bytes.
    public var format: Format?
    /// One name = that iothread; several = multi-threading (refused by vduse-blk, as in QEMU).
    public var iothreads: [String] = []
    /// `--overlay`: `image` is a qcow2 overlay that `add` creates over this base (an absolute
    /// path, opened read-only), and `del` deletes.
    public var overlayBase: String?
    /// The base's format (nil: probed).
    public var overlayBaseFormat: Format?

    public init(image: String) { self.image = image }

    /// The image path made absolute (records compare images by this); a URI in its usual form.
    public var absoluteImage: String {
        if let n = try? nbdSpec { return n.uri }
        if let r = try? rbdSpec { return r.uri }
        if isURI { return image }
        return canonicalPath(image)
    }

    /// `--name`, or the image's file name without its extension, with every character outside
    /// `[A-Za-z0-9._-]` replaced by `-` (e.g. `/srv/images/web 01.qcow.img` → `web-01.qcow`).
    public var resolvedName: String {
        if let name { return name }
        if let n = try? nbdSpec { return Self.clean(NetworkURI.defaultName(n)) }
        if let r = try? rbdSpec { return Self.clean(NetworkURI.defaultName(r)) }
        let base = (image as NSString).lastPathComponent
        let stem = (base as NSString).deletingPathExtension
        return Self.clean(stem.isEmpty ? base : stem)
    }

    private static func clean(_ s: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        let cleaned = String(s.map { allowed.contains($0) ? $0 : "-" })
        return cleaned.isEmpty ? "disk" : cleaned
    }

    /// The image is a network URI (`nbd://`, `nbd+unix://`) rather than a file.
    public var isURI: Bool { NetworkURI.isURI(image) }

    /// The NBD export the URI names (nil for a file); throws for a malformed URI.
    public var nbdSpec: NBDSpec? {
        get throws(ProvisioningError) { isURI && !image.hasPrefix("rbd:") ? try NetworkURI.nbd(image) : nil }
    }

    /// The RBD image an `rbd:` name gives (nil otherwise); throws for a malformed one.
    public var rbdSpec: RBDSpec? {
        get throws(ProvisioningError) { image.hasPrefix("rbd:") ? try NetworkURI.rbd(image) : nil }
    }

    /// What `add` exports: the network image the URI names, or nil for a file.
    public var networkKind: BackendSpec.Kind? {
        get throws(ProvisioningError) {
            if let n = try nbdSpec { return .nbd(n) }
            if let r = try rbdSpec { return .rbd(r) }
            return nil
        }
    }

    /// The export id: the name when it is a well-formed QEMU id, else the name prefixed with `e`.
    public var exportID: String {
        let n = resolvedName
        if Identifier.isWellFormed(n) { return n }
        return "e" + n
    }

    /// `--serial`, or the name cut to the 20 bytes virtio-blk carries, so that
    /// `/dev/disk/by-id/virtio-<serial>` exists.
    public var resolvedSerial: String {
        if let serial { return serial }
        var s = ""
        for c in resolvedName where s.utf8.count + String(c).utf8.count <= 20 { s.append(c) }
        return s
    }

    /// Keyval values escape commas by doubling them.
    private static func escape(_ value: String) -> String { value.replacingOccurrences(of: ",", with: ",,") }

    /// The `serve` arguments for this export.
    public var serveArguments: [String] {
        objects.flatMap { ["--object", $0] } + blockdevs.flatMap { ["--blockdev", $0] } + ["--export", exportSpec]
    }

    /// `--object` values: one iothread per `--iothread` name.
    public var objects: [String] { iothreads.map { "iothread,id=\(Self.escape($0))" } }

    /// `--format`, else qcow2 if the image starts with the qcow2 magic, else raw (qemu-nbd's
    /// probe). An unreadable image is called raw here; opening it reports why.
    public var resolvedFormat: Format {
        if overlayBase != nil { return .qcow2 }  // made by add, maybe not yet
        if let format { return format }
        // Never blocks: a FIFO (or anything but a file or block device) is left to the open,
        // which refuses it.
        guard let file = try? UniqueFD(open: image, O_RDONLY | O_NONBLOCK) else { return .raw }
        let fd = file.rawValue
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFBLK else { return .raw }
        var magic: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        let n = withUnsafeMutableBytes(of: &magic) { pread(fd, $0.baseAddress, 4, 0) }
        return n == 4 && magic == (0x51, 0x46, 0x49, 0xfb) ? .qcow2 : .raw
    }

    /// A block device is a `host_device` node (QEMU's `file` driver refuses it).
    public static func isBlockDevice(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFBLK
    }

    /// `--blockdev` values: the image as a file (or host_device) node under a raw or qcow2 node.
    public var blockdevs: [String] { blockdevs(isBlockDevice: Self.isBlockDevice) }

    public func blockdevs(isBlockDevice: (String) -> Bool) -> [String] {
        if let r = try? rbdSpec {
            var node = "driver=rbd,node-name=disk0,pool=\(Self.escape(r.pool)),image=\(Self.escape(r.image))"
            if !r.namespace.isEmpty { node += ",namespace=\(Self.escape(r.namespace))" }
            if let s = r.snapshot { node += ",snapshot=\(Self.escape(s))" }
            if let c = r.conf { node += ",conf=\(Self.escape(c))" }
            if let u = r.user { node += ",user=\(Self.escape(u))" }
            return [node + (readOnly ? ",read-only=on" : "")]
        }
        if isURI {
            // A malformed URI was refused before (`networkKind`); this node then fails the checks.
            guard let n = try? nbdSpec else { return ["driver=nbd,node-name=disk0"] }
            var node = "driver=nbd,node-name=disk0"
            switch n.server {
            case let .inet(host, port): node += ",server.type=inet,server.host=\(Self.escape(host)),server.port=\(Self.escape(port))"
            case let .unix(path): node += ",server.type=unix,server.path=\(Self.escape(path))"
            }
            if !n.export.isEmpty { node += ",export=\(Self.escape(n.export))" }
            return [node + (readOnly ? ",read-only=on" : "")]
        }
        var args: [String] = []
        let driver = isBlockDevice(absoluteImage) ? "host_device" : "file"
        var file = "driver=\(driver),node-name=file0,filename=\(Self.escape(absoluteImage))"
        if readOnly { file += ",read-only=on" }
        if forceShare { file += ",force-share=on" }
        if direct { file += ",cache.direct=on" }
        args.append(file)
        args.append("driver=\(resolvedFormat.rawValue),node-name=disk0,file=file0" + (readOnly ? ",read-only=on" : ""))
        return args
    }

    /// `add`'s queue count when none is given: one per online CPU (blk-mq then gives each CPU a
    /// queue of its own), at most 4 (each queue adds a bounce buffer share; 2 and 4 queues gave
    /// 1.07-1.29x one queue's IOPS with 4 jobs on 4 vCPUs, docs/performance.md). Stored in the
    /// record, so a restart keeps it when the CPU count changes.
    public static var defaultQueueCount: Int { min(max(sysconf(Int32(_SC_NPROCESSORS_ONLN)), 1), 4) }

    /// The `--export` value.
    public var exportSpec: String {
        var export = "type=vduse-blk,id=\(Self.escape(exportID)),node-name=disk0,name=\(Self.escape(resolvedName))"
        export += ",writable=\(readOnly ? "off" : "on")"
        if writethrough { export += ",writethrough=on" }
        export += ",num-queues=\(Self.escape(numQueues ?? String(Self.defaultQueueCount)))"
        if let queueSize { export += ",queue-size=\(Self.escape(queueSize))" }
        if let logicalBlockSize { export += ",logical-block-size=\(Self.escape(logicalBlockSize))" }
        export += ",serial=\(Self.escape(resolvedSerial))"
        if iothreads.count == 1 {
            export += ",iothread=\(Self.escape(iothreads[0]))"
        } else {
            for (i, t) in iothreads.enumerated() { export += ",iothread.\(i)=\(Self.escape(t))" }
        }
        return export
    }
}
