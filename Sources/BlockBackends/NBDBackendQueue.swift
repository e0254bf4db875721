import Glibc
import Kernel
import Virtio

/// One virtqueue's requests to an NBD backend, sent over the connection it was given.
final class NBDBackendQueue: BackendQueue {
    private let connection: NBDConnection
    private let loop: any EventLoop
    private unowned let sink: any CompletionSink
    private var commands: [NBDCommand] = []
    private(set) var inFlight = 0
    /// Answered since the last `reap`.
    private var ready: [Completion] = []
    private var closed = false

    init(connection: NBDConnection, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError) {
        self.connection = connection
        self.loop = loop
        self.sink = sink
        commands = (0..<depth).map { NBDCommand(queue: self, tag: UInt16($0)) }
        try connection.attach(self, loop: loop)
    }

    func submit(_ io: BlockIO, tag: UInt16) -> Submission {
        loop.assertCurrent()
        precondition(Int(tag) < commands.count, "tag beyond the queue depth")
        let command = commands[Int(tag)]
        command.io = io
        inFlight += 1
        connection.start(command)
        return .pending
    }

    func commit() {
        loop.assertCurrent()
        connection.commit(from: self)
    }

    func reap(into completions: inout [Completion]) {
        completions.append(contentsOf: ready)
        ready.removeAll(keepingCapacity: true)
    }

    /// From the connection: a request is answered (called on the loop).
    func finished(_ command: NBDCommand, status: BlockStatus) {
        inFlight -= 1
        ready.append(Completion(tag: command.tag, status: status))
    }

    /// From the connection's own event handlers (or another queue's commit on the shared
    /// connection), never from inside this queue's calls: the engine may come and reap.
    func completionsDone() { sink.completionsReady() }

    /// Waits for the server's answers, or for the reconnect deadline to fail them.
    func quiesce() {
        loop.preconditionCurrent()
        while inFlight > 0 { connection.pollOnce(timeoutMs: 100) }
    }

    func close() {
        guard !closed else { return }
        closed = true
        for c in commands { c.abandoned = true }
        connection.detach(self)
    }
}
