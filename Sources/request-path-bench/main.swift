// Host-side benchmark of our own request path: an in-memory virtio driver offers requests in
// batches to the real queue server (chain walk, parse, slots, backend interface, used ring,
// interrupt decision) over the null backend or a file backend on tmpfs, with and without the
// reconnect log. Prints nanoseconds per request (medians of alternating rounds).
// bench/request-path runs it, and runs it under callgrind for instructions per request.
import Glibc

let usage = """
    usage: request-path-bench [--backend null|file] [--op read|write] [--size BYTES|Nk]
                              [--log both|on|off] [--rounds R] [--requests N]

    Without --backend: the standard rows (null write 4k; file write/read 4k and 64k; file read
    256k), N requests per round for the null backend, N/5 for 4k, N/25 for 64k and N/100 for 256k
    file rows (their requests cost more). With --backend: that one row, exactly N requests
    (rounded up to batches of \(batch)).
    --log both alternates rounds without and with the reconnect log and prints the log's cost.
    Defaults: --op write --size 4k --log both --rounds 11 --requests 1000000.
    The file backend uses an image on /dev/shm (tmpfs): transfers are done inline on the
    iothread, except reads above 128 KiB, which go through io_uring.
    """

func fail(_ message: String) -> Never {
    let line = "request-path-bench: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func parsed<T>(_ value: T?, _ message: String) -> T {
    guard let value else { fail(message) }
    return value
}

var backend: Workload.Backend?
var operation = Workload.Operation.write
var size = 4096
var logMode = "both"
var rounds = 11
var requests: Int?

var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    if flag == "--help" || flag == "-h" {
        print(usage)
        exit(0)
    }
    guard let value = arguments.popFirst() else { fail("\(flag) needs a value\n\(usage)") }
    switch flag {
    case "--backend": backend = parsed(Workload.Backend(rawValue: value), "--backend: null or file")
    case "--op": operation = parsed(Workload.Operation(rawValue: value), "--op: read or write")
    case "--size":
        let bytes = value.hasSuffix("k") ? Int(value.dropLast()).map { $0 * 1024 } : Int(value)
        guard let bytes, bytes > 0, bytes % 512 == 0 else { fail("--size: a multiple of 512 bytes") }
        size = bytes
    case "--log":
        guard ["both", "on", "off"].contains(value) else { fail("--log: both, on or off") }
        logMode = value
    case "--rounds": rounds = parsed(Int(value).flatMap { $0 > 0 ? $0 : nil }, "--rounds: a positive number")
    case "--requests": requests = parsed(Int(value).flatMap { $0 > 0 ? $0 : nil }, "--requests: a positive number")
    default: fail("unknown option \(flag)\n\(usage)")
    }
}

let rows: [(Workload, Int)]
if let backend {
    rows = [(Workload(backend: backend, operation: operation, size: size), requests ?? 1_000_000)]
} else {
    let n = requests ?? 1_000_000
    rows = [
        (Workload(backend: .null, operation: .write, size: 4096), n),
        (Workload(backend: .file, operation: .write, size: 4096), n / 5),
        (Workload(backend: .file, operation: .read, size: 4096), n / 5),
        (Workload(backend: .file, operation: .write, size: 65536), n / 25),
        (Workload(backend: .file, operation: .read, size: 65536), n / 25),
        // Above the inline limit: through io_uring and its workers, completions reaped by the loop.
        (Workload(backend: .file, operation: .read, size: 262_144), n / 100),
    ]
}

func median(_ v: [Double]) -> Double? { v.isEmpty ? nil : v.sorted()[v.count / 2] }
func column(_ v: Double?) -> String { v.map { String(format: "%12.1f", $0) } ?? String(repeating: " ", count: 11) + "-" }

print("request path, batches of \(batch), medians of \(rounds) round(s), ns/request")
print("workload".padding(toLength: 20, withPad: " ", startingAt: 0) + "  requests/round  without log     with log  log cost")
do {
    for (workload, count) in rows {
        let batches = max(1, (count + batch - 1) / batch)
        var plain: [Double] = [], logged: [Double] = []
        for r in 0..<rounds {
            // Alternate the order so drift hits both alike.
            for withLog in r % 2 == 0 ? [false, true] : [true, false] {
                guard logMode == "both" || (logMode == "on") == withLog else { continue }
                let ns = try round(workload, batches: batches, withLog: withLog)
                if withLog { logged.append(ns) } else { plain.append(ns) }
            }
        }
        var line = workload.description.padding(toLength: 20, withPad: " ", startingAt: 0)
        line += String(format: " %15d", batches * batch) + column(median(plain)) + column(median(logged))
        if let p = median(plain), let l = median(logged) {
            line += String(format: "  %+.1f (%+.1f %%)", l - p, (l - p) / p * 100)
        }
        print(line)
    }
} catch {
    fail("\(error)")
}
