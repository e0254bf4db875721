import Testing
@testable import Core

/// The iothread's work queue and its end.
@Suite(.timeLimit(.minutes(1))) struct IOThreadTests {
    /// Work posted to a stopped iothread used to wait forever.
    @Test func workForAStoppedIOThreadFails() throws {
        let t = try IOThread(name: "defect3")
        t.start()
        #expect(try t.run { 42 } == 42)
        t.stop()
        #expect(throws: IOThread.Stopped.self) { try t.run { 1 } }
        #expect(t.execute {} == false)
    }
}
