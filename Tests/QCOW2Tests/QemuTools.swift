import Foundation
import Testing
import TestSupport

/// qemu-img and qemu-io, the oracle for every test here. Missing tools fail the test, loudly.
enum Qemu {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func tool(_ name: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        throw Failure(description: "\(name) not found: install qemu-utils (scripts/install-deps build)")
    }

    /// Runs a tool; returns exit status and combined output.
    @discardableResult
    static func run(_ name: String, _ args: [String], allowFailure: Bool = false) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try tool(name))
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        if !allowFailure, p.terminationStatus != 0 {
            throw Failure(description: "\(name) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(out)")
        }
        return (p.terminationStatus, out)
    }

    static func img(_ args: String...) throws { try run("qemu-img", args) }

    /// qemu-io commands against an image (format given, so a backing chain is followed).
    static func io(_ image: String, format: String = "qcow2", _ commands: String...) throws {
        try run("qemu-io", ["-f", format] + commands.flatMap { ["-c", $0] } + [image])
    }

    /// The guest view of an image as qemu sees it.
    static func rawBytes(_ image: String, format: String = "qcow2") throws -> [UInt8] {
        let out = image + ".expected.raw"
        try run("qemu-img", ["convert", "-f", format, "-O", "raw", image, out])
        defer { try? FileManager.default.removeItem(atPath: out) }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    /// `qemu-img check`: exit 0, no errors, and (when asked) no leaked clusters.
    static func check(_ image: String, allowLeaks: Bool = false) throws {
        let (status, out) = try run("qemu-img", ["check", image], allowFailure: true)
        // Exit 3: leaked clusters only (no corruption).
        #expect(status == 0 || (allowLeaks && status == 3), "qemu-img check \(image): exit \(status)\n\(out)")
        if !allowLeaks { #expect(!out.contains("leaked"), "qemu-img check \(image) found leaks:\n\(out)") }
    }
}

/// A sparse raw file of `size` bytes with data at scattered, unaligned places.
func makeSparseRaw(_ path: String, size: Int, seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    let fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0o644)
    guard fd >= 0 else { throw Qemu.Failure(description: "create \(path)") }
    defer { close(fd) }
    ftruncate(fd, off_t(size))
    let regions = [(0, 100_000), (size / 8 + 3000, 70_000), (size / 2 - 17, 2 * 1_048_576 + 33), (size - 5000, 5000)]
    for (offset, full) in regions where offset < size {
        let length = min(full, size - offset)
        let data = rng.bytes(length)
        _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, length, off_t(offset)) }
    }
}
