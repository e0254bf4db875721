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
    private var closed = false

    init(connection: NBDConnection, depth: Int, loop: any EventLoop, sink: any CompletionSink) throws(SystemError) {
        self.connection = connection
        self.loop = loop
        self.sink = sink
        commands = (0..<depth).map { NBDCommand(queue: self, tag: UInt16($0)) }
        try connection.attach(self, loop: loop)
    }

    func submit(_ io: BlockIO, tag: UInt16) {
        loop.assertCurrent()
        precondition(Int(tag) < commands.count, "tag beyond the queue depth")
        let command = commands[Int(tag)]
        command.io = io
        inFlight += 1
        connection.start(command)
    }

    func commit() {
        loop.assertCurrent()
        connection.commit()
    }

    /// From the connection: a request is answered (called on the loop).
    func finished(_ command: NBDCommand, status: BlockStatus) {
        inFlight -= 1
        sink.complete(tag: command.tag, status: status)
    }

    func completionsDone() { sink.completionsDone() }

    /// Waits for the server's answers, or for the reconnect deadline to fail them.
    func quiesce() {
        loop.assertCurrent()
        while inFlight > 0 { connection.pollOnce(timeoutMs: 100) }
    }

    func close() {
        guard !closed else { return }
        closed = true
        for c in commands { c.abandoned = true }
        connection.detach(self)
    }
}
