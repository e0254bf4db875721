import Foundation
import QAPI

/// `add`'s network images, written as qemu-img takes them: `nbd://HOST[:PORT]/EXPORT` and
/// `nbd+unix:///EXPORT?socket=PATH`.
public enum NetworkURI {
    public static func isURI(_ s: String) -> Bool {
        s.hasPrefix("nbd://") || s.hasPrefix("nbd+unix://")
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
