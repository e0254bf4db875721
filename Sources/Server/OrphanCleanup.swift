import Core
import Logging
import QAPI

/// Tears down the device of a server that is gone (`del` of a dead export): an in-process
/// manager reconnects to the VDUSE device and serves it until the kernel lets go. The client
/// (`Provisioning`) does not link the block server, so the command line hands this in.
public enum OrphanCleanup {
    /// Tries `plans` in order (the image, then a null backend): in-flight requests go to the
    /// image if it can still be opened; if it is gone or taken, to the null backend, since the
    /// device must go either way.
    public static func remove(_ plans: [ExportPlan], logger: Logger) throws {
        let manager = try ExportManager(iothreads: [], logger: logger)
        defer { manager.shutdown() }
        for (i, plan) in plans.enumerated() {
            do {
                try manager.removeOrphan(plan)
                return
            } catch where i < plans.count - 1 {
                logger.warning("cannot reopen the image of '\(plan.deviceName)' (\(error)): removing the device without it")
            }
        }
    }
}
