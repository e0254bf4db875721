import CVDUSE
import Kernel
import Glibc
import Synchronization

/// Test-only: makes the server crash for real, in its data path, at a moment a test chooses, so
/// that the test bed can prove that a crash is recovered like a SIGKILL. Inert unless the
/// environment variable `VDUSE_EXPORT_TEST_CRASH` names a file when the server starts (read once).
/// Then SIGUSR1 arms the switch with the kind of crash written in that file (`trap`, `fault`,
/// `abort`, `oom` or `syscall`), and the next round of requests on any queue ends the process after handing
/// that round's requests to the backend. Not an interface: nothing but the test bed sets it.
package enum TestCrash {
    package enum Kind: UInt8, Sendable, CaseIterable {
        /// A failed precondition (Swift's trap instruction: SIGILL).
        case trap = 1
        /// A store through a bad pointer (SIGSEGV).
        case fault
        /// abort(3) (SIGABRT).
        case abort
        /// Allocates and touches memory until the kernel's OOM killer ends the process (the test
        /// puts the server in a memory-limited cgroup first).
        case oom
        /// A system call outside the serving phase's seccomp allow-list (SIGSYS once confined).
        case syscall

        package init?(name: String) {
            guard let kind = Kind.allCases.first(where: { "\($0)" == name }) else { return nil }
            self = kind
        }
    }

    package static let variable = "VDUSE_EXPORT_TEST_CRASH"

    /// The file naming the kind of crash, nil (the normal case) when the switch is off.
    package static let kindFile: String? = getenv(variable).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }

    /// 0: not armed; otherwise a Kind's raw value.
    private static let armed = Atomic<UInt8>(0)

    /// What SIGUSR1 armed: a crash of the data path, or a point of a live job (`JobPoint`).
    package enum Armed: Equatable, Sendable, CustomStringConvertible {
        case crash(Kind)
        case job(JobPoint, JobAction)

        package var description: String {
            switch self {
            case let .crash(kind): "\(kind)"
            case let .job(point, action): "\(action) at \(point.rawValue)"
            }
        }
    }

    /// Arms the switch with what the file names (the server's signal thread, on SIGUSR1): a
    /// kind of crash, or `POINT` / `stall-POINT` for a job (`JobPoint`); returns it, nil (and
    /// nothing armed) when the switch is off or the file names nothing known.
    package static func arm() -> Armed? {
        guard let kindFile else { return nil }
        guard let file = try? UniqueFD(open: kindFile, O_RDONLY) else { return nil }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = read(file.rawValue, &buffer, buffer.count)
        guard n > 0 else { return nil }
        let name = String(decoding: buffer[..<n], as: UTF8.self).trimmingASCIIWhitespace
        if case let (point, action)? = JobPoint.parse(name) {
            armJob(point, action)
            return .job(point, action)
        }
        guard let kind = Kind(name: name) else { return nil }
        armed.store(kind.rawValue, ordering: .relaxed)
        return .crash(kind)
    }

    /// Once per round of requests: crashes if armed. One relaxed load when the switch is off.
    @inline(__always)
    package static func checkpoint() {
        let kind = armed.load(ordering: .relaxed)
        if kind != 0 { crash(Kind(rawValue: kind), opaque: Int(kind)) }
    }

    @inline(never)
    private static func crash(_ kind: Kind?, opaque: Int) -> Never {
        switch kind {
        case .trap?, nil:
            preconditionFailure("\(variable): trap in the data path")
        case .fault?:
            // 8 bytes into page 0 (fault = 2), stored from C: the optimiser drops a Swift store
            // that only a trap follows, and the release build then died of the trap (SIGILL).
            cvduse_test_fault(UInt(opaque &* 4))
            preconditionFailure("\(variable): the store to page 0 did not fault")
        case .abort?:
            Glibc.abort()
        case .syscall?:
            let r = Confinement.makeForbiddenCall()
            preconditionFailure("\(variable): the forbidden system call returned \(r): the server is not confined")
        case .oom?:
            var held: [UnsafeMutableRawPointer] = []
            while true {
                let chunk = 16 << 20
                if let p = malloc(chunk) {
                    memset(p, 0x5a, chunk)
                    held.append(p)
                } else {
                    usleep(1000)
                }
            }
        }
    }
}

private extension String {
    var trimmingASCIIWhitespace: String {
        String(unicodeScalars.filter { !$0.properties.isWhitespace })
    }
}
