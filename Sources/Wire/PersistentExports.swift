import Foundation

/// Exports that come back at boot: `add --persist` writes `/etc/vduse-export/NAME.conf` (the
/// `serve` arguments, read by vduse-export@NAME.service) and a drop-in ordering the unit after the
/// image's mount, then enables the unit; `del` disables it and removes both. Both are idempotent.
public struct PersistentExports: Sendable {
    public let configDirectory: String
    public let unitDirectory: String

    /// `$VDUSE_EXPORT_CONFIG_DIR` or /etc/vduse-export; drop-ins under /etc/systemd/system.
    public static var standard: PersistentExports {
        let env = ProcessInfo.processInfo.environment
        return PersistentExports(configDirectory: env["VDUSE_EXPORT_CONFIG_DIR"] ?? "/etc/vduse-export",
                                 unitDirectory: env["VDUSE_EXPORT_UNIT_DIR"] ?? "/etc/systemd/system")
    }

    public init(configDirectory: String, unitDirectory: String) {
        self.configDirectory = configDirectory
        self.unitDirectory = unitDirectory
    }

    public static func unit(_ name: String) -> String { "vduse-export@\(name).service" }
    public func configPath(_ name: String) -> String { "\(configDirectory)/\(name).conf" }
    public func dropInDirectory(_ name: String) -> String { "\(unitDirectory)/\(Self.unit(name)).d" }
    public func dropInPath(_ name: String) -> String { "\(dropInDirectory(name))/persist.conf" }

    public func isPersistent(_ name: String) -> Bool { FileManager.default.fileExists(atPath: configPath(name)) }
}
