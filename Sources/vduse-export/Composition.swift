import Logging
import Provisioning
import Server

extension Provisioner {
    /// The client verbs, with the server side's cleanup of a dead server's device (`del`, and an
    /// `add` undoing itself): the one place the two sides meet.
    static func forCommands(logger: Logger) -> Provisioner {
        Provisioner(logger: logger, removeOrphan: { try OrphanCleanup.remove($0, logger: logger) },
                    probeTarget: { try NetworkTargetProbe.inspect($0) })
    }
}
