import Core
import QAPI

/// `mirror`'s look at a network target before it starts a job (Core's `TargetProbe`), for the
/// client side, which does not link the block server.
public enum NetworkTargetProbe {
    public static func inspect(_ spec: BackendSpec) throws -> (size: UInt64, headIsZero: Bool) {
        let probe = try TargetProbe.inspect(spec)
        return (probe.size, probe.headIsZero)
    }
}
