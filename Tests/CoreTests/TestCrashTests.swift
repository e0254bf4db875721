import Core
import Glibc
import Testing

/// The test-only crash switch is inert unless its variable was set when the process started.
@Suite struct TestCrashTests {
    @Test func offWithoutTheVariable() {
        #expect(getenv(TestCrash.variable) == nil, "run the unit tests without \(TestCrash.variable)")
        #expect(TestCrash.kindFile == nil)
        // SIGUSR1's handler would call this: with the switch off it arms nothing.
        #expect(TestCrash.arm() == nil)
        TestCrash.checkpoint()  // returns: nothing armed
    }

    @Test func kindsByName() {
        #expect(TestCrash.Kind(name: "trap") == .trap)
        #expect(TestCrash.Kind(name: "fault") == .fault)
        #expect(TestCrash.Kind(name: "abort") == .abort)
        #expect(TestCrash.Kind(name: "oom") == .oom)
        #expect(TestCrash.Kind(name: "syscall") == .syscall)
        #expect(TestCrash.Kind(name: "none") == nil)
        #expect(TestCrash.Kind(name: "") == nil)
    }

    @Test func jobPointsByName() {
        func parsed(_ name: String) -> String? { TestCrash.JobPoint.parse(name).map { "\($0.1) \($0.0.rawValue)" } }
        #expect(parsed("mid-copy") == "kill mid-copy")
        #expect(parsed("stall-mid-copy") == "stall mid-copy")
        #expect(parsed("after-switch") == "kill after-switch")
        #expect(parsed("stall-") == nil)
        #expect(parsed("trap") == nil)
        // Nothing armed: every point is passed through.
        for point in TestCrash.JobPoint.allCases { #expect(!TestCrash.reached(point)) }
    }
}
