import Core
import Glibc
import Kernel
import Logging

/// What a server keeps once its disks exist (docs/options.md "What the server may do"): the
/// capabilities of `Capability` it still uses, no_new_privs, and the seccomp allow-list of
/// `Confinement.servingSystemCalls`. `VDUSE_EXPORT_CONFINE=0` leaves the server unconfined, to
/// tell a missing entry of the allow-list from a bug.
struct ServingConfinement {
    static let variable = "VDUSE_EXPORT_CONFINE"

    let enabled: Bool
    let keep: Set<Capability>

    init(binding: ExportManager.Binding, environment: String? = getenv(Self.variable).map { String(cString: $0) }) {
        enabled = environment != "0"
        // With --no-bind the caller binds and deletes the vdpa devices: no netlink admin here.
        keep = binding == .server ? [.dacOverride, .dacReadSearch, .netAdmin] : [.dacOverride, .dacReadSearch]
    }

    func limitCapabilities() throws {
        guard enabled else { return }
        do { try Confinement.limitCapabilities(to: keep) } catch {
            throw ExportError("Could not drop capabilities", because: error)
        }
    }

    func restrictSystemCalls(logger: Logger) throws {
        guard enabled else {
            logger.warning("\(Self.variable)=0: the server keeps every capability and system call")
            return
        }
        do { try Confinement.restrictSystemCalls() } catch {
            throw ExportError("Could not load the system-call allow-list", because: error)
        }
        let names = keep.map(\.name).sorted().joined(separator: ", ")
        logger.info("confined: capabilities \(names); no_new_privs; seccomp allow-list of \(Confinement.servingSystemCalls.count + Confinement.signalCalls.count) system calls")
    }
}
