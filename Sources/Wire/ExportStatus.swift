/// What a running export looks like from outside (query-block-exports, list, readiness).
public struct ExportStatus: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var nodeName: String
    /// The block device node, e.g. /dev/vda.
    public var device: String
    public var sizeBytes: UInt64
    public var numQueues: UInt16
    public var serial: String
    public var shuttingDown: Bool
    /// Times a server took this export's device over after its predecessor was gone.
    public var restarts: UInt32 = 0

    public init(id: String, name: String, nodeName: String, device: String, sizeBytes: UInt64, numQueues: UInt16,
                serial: String, shuttingDown: Bool, restarts: UInt32 = 0) {
        self.id = id
        self.name = name
        self.nodeName = nodeName
        self.device = device
        self.sizeBytes = sizeBytes
        self.numQueues = numQueues
        self.serial = serial
        self.shuttingDown = shuttingDown
        self.restarts = restarts
    }
}
