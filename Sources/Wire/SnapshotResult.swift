/// What a live snapshot did: `frozen` is the image served until now (unchanged from here on,
/// open read-only as the backing of `active`), `active` the new overlay the disk writes to.
public struct SnapshotResult: Sendable, Equatable, Codable {
    public var name: String
    public var frozen: String
    public var active: String

    public init(name: String, frozen: String, active: String) {
        self.name = name
        self.frozen = frozen
        self.active = active
    }
}
