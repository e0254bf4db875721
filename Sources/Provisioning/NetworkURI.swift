import Foundation
import QAPI

/// `add`'s network images, written as qemu-img takes them: `nbd://HOST[:PORT]/EXPORT`,
/// `nbd+unix:///EXPORT?socket=PATH` and `rbd:POOL/[NAMESPACE/]IMAGE[@SNAP][:conf=PATH][:id=USER]`.
public enum NetworkURI {
    public static func isURI(_ s: String) -> Bool {
        s.hasPrefix("nbd://") || s.hasPrefix("nbd+unix://") || s.hasPrefix("rbd:")
    }

    public static func rbd(_ s: String) throws(ProvisioningError) -> RBDSpec {
        func bad(_ why: String) -> ProvisioningError {
            ProvisioningError(.invalidOptions, "invalid RBD name '\(s)': \(why) (rbd:POOL/[NAMESPACE/]IMAGE[@SNAP][:conf=PATH][:id=USER])")
        }
        var parts = s.dropFirst(4).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let name = parts.removeFirst()
        var snapshot: String?
        var path = name
        if let at = name.firstIndex(of: "@") {
            snapshot = String(name[name.index(after: at)...])
            path = String(name[..<at])
            guard !snapshot!.isEmpty else { throw bad("empty snapshot name") }
        }
        let pieces = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard pieces.count == 2 || pieces.count == 3, !pieces.contains("") else { throw bad("no POOL/IMAGE") }
        var spec = RBDSpec(pool: pieces[0], namespace: pieces.count == 3 ? pieces[1] : "", image: pieces.last!, snapshot: snapshot)
        for option in parts {
            let kv = option.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[1].isEmpty else { throw bad("'\(option)' is not KEY=VALUE") }
            switch kv[0] {
            case "conf": spec.conf = kv[1]
            case "id": spec.user = kv[1]
            default: throw bad("only conf= and id= are understood here (keys stay in the keyring ceph.conf names)")
            }
        }
        return spec
    }

    public static func nbd(_ s: String) throws(ProvisioningError) -> NBDSpec {
        func bad(_ why: String) -> ProvisioningError {
            ProvisioningError(.invalidOptions, "invalid NBD URI '\(s)': \(why) (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)")
        }
        guard let c = URLComponents(string: s) else { throw bad("not a URI") }
        let path = c.percentEncodedPath.removingPercentEncoding ?? c.path
        let export = path.hasPrefix("/") ? String(path.dropFirst()) : path
        switch c.scheme {
        case "nbd":
            guard let host = c.host, !host.isEmpty else { throw bad("no host") }
            guard c.query == nil else { throw bad("nbd:// takes no query") }
            let h = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            return NBDSpec(server: .inet(host: h, port: c.port.map(String.init) ?? "10809"), export: export)
        case "nbd+unix":
            guard c.host == nil || c.host == "" else { throw bad("nbd+unix:// takes no host") }
            let items = c.queryItems ?? []
            guard let socket = items.first(where: { $0.name == "socket" })?.value, !socket.isEmpty else {
                throw bad("no socket=PATH")
            }
            guard items.count == 1 else { throw bad("only socket= is understood") }
            return NBDSpec(server: .unix(path: socket), export: export)
        default:
            throw bad("unknown scheme")
        }
    }

    /// `add`'s default name for an RBD image: the image's, with the snapshot's after a dash.
    static func defaultName(_ r: RBDSpec) -> String {
        r.image + (r.snapshot.map { "-" + $0 } ?? "")
    }

    /// The export name `add` gives a URI without `--name`: the export's, else the socket's file
    /// name, else `nbd-HOST-PORT`.
    static func defaultName(_ n: NBDSpec) -> String {
        if !n.export.isEmpty { return (n.export as NSString).lastPathComponent }
        switch n.server {
        case let .unix(path): return ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        case let .inet(host, port): return "nbd-\(host)-\(port)"
        }
    }
}
