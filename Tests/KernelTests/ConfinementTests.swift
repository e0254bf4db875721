import Kernel
import Testing

@Suite struct ConfinementTests {
    /// A misspelt name would be skipped silently at load time and its call end the server later.
    @Test func everyAllowedCallExistsOnThisArchitecture() {
        let unknown = (Confinement.servingSystemCalls + Confinement.signalCalls).filter { Confinement.number(of: $0) == nil }
        #expect(unknown.isEmpty, "not system calls here: \(unknown)")
        #expect(Set(Confinement.servingSystemCalls).count == Confinement.servingSystemCalls.count, "a name listed twice")
    }

    @Test func whatAServerMustNotDoIsNotAllowed() {
        let forbidden = ["execve", "execveat", "ptrace", "mount", "umount2", "pivot_root", "chroot", "init_module",
                         "finit_module", "delete_module", "kexec_load", "bpf", "perf_event_open", "setuid", "setgid",
                         "setresuid", "capset", "unshare", "setns", "swapon", "swapoff", "reboot", "keyctl",
                         "add_key", "process_vm_writev", "userfaultfd", "open_by_handle_at", "fork", "vfork",
                         "kill", "tgkill"]
        let allowed = Set(Confinement.servingSystemCalls)
        #expect(allowed.isDisjoint(with: forbidden), "allowed: \(allowed.intersection(forbidden).sorted())")
        for name in forbidden { #expect(Confinement.number(of: name) != nil, "\(name) unknown: the check above proves nothing for it") }
    }

    @Test func capabilityNumbersAreTheKernels() {
        #expect(Capability.dacOverride.rawValue == 1 && Capability.dacReadSearch.rawValue == 2 && Capability.netAdmin.rawValue == 12)
        #expect(Capability.allCases.map(\.name).sorted() == ["cap_dac_override", "cap_dac_read_search", "cap_net_admin"])
    }
}
