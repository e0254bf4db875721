import Glibc
import Synchronization

/// Which iothread an OS thread runs, kept in a thread-local: checking that code runs on its
/// loop is one `pthread_getspecific` and a compare, with no lock (swift-nio's way).
package struct LoopID: Hashable, Sendable {
    let raw: UInt

    /// A new identity, never 0 (0 is what a thread that runs no loop reads).
    static func next() -> LoopID { LoopID(raw: loopIDCounter.wrappingAdd(1, ordering: .relaxed).newValue) }

    /// The loop the calling thread runs, if any.
    static var current: LoopID? {
        let raw = UInt(bitPattern: pthread_getspecific(loopIDKey))
        return raw == 0 ? nil : LoopID(raw: raw)
    }

    /// Makes the calling thread this loop's own (nil: no loop's).
    static func makeCurrent(_ id: LoopID?) {
        _ = pthread_setspecific(loopIDKey, UnsafeRawPointer(bitPattern: id?.raw ?? 0))
    }
}

private let loopIDCounter = Atomic<UInt>(0)
private let loopIDKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
    return key
}()

/// A value only one iothread may touch, handed around as a `Sendable` handle (swift-nio's
/// `NIOLoopBound`): every access checks, always, that it happens on that loop. The one place
/// where the compiler takes our word for confinement; the check is what keeps it.
package struct LoopBound<Value>: Sendable {
    package let loop: LoopID
    nonisolated(unsafe) private let stored: Value

    /// Binds `value` to the loop the caller runs on.
    package init(_ value: Value, loop: LoopID) {
        precondition(LoopID.current == loop, "a value bound to a loop must be made on that loop")
        self.loop = loop
        stored = value
    }

    /// Hands `value` to a loop that does not run yet (or runs elsewhere): the caller gives it
    /// up, which the compiler checks (`sending`).
    package init(_ value: sending Value, handingTo loop: LoopID) {
        self.loop = loop
        stored = value
    }

    package var value: Value {
        precondition(LoopID.current == loop, "loop-bound value touched off its loop")
        return stored
    }
}
