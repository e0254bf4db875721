import Foundation
import Glibc
import Testing
@testable import QAPI
@testable import QMP
@testable import Core
@testable import Server
@testable import Wire

/// QMP is a JSON stream (issue 20): QEMU's Python library sends commands with no newline, and
/// tools may send several per write or dribble one over many.
@Suite struct QMPStreamTests {
    func texts(_ pieces: [JSONStream.Piece]) -> [String] {
        pieces.map { p in if case let .value(b) = p { String(decoding: b, as: UTF8.self) } else { "<too long>" } }
    }

    @Test func valuesAreCutWhereTheyBalanceNewlineOrNot() {
        var s = JSONStream(limit: 1 << 20)
        #expect(texts(s.feed(Array(#"{"execute":"a"}{"execute":"b","arguments":{"x":[1,{"y":"}"}]}}"#.utf8)))
                == [#"{"execute":"a"}"#, #"{"execute":"b","arguments":{"x":[1,{"y":"}"}]}}"#])
        #expect(texts(s.feed(Array(" \r\n\t{\"a\":\"q\\\"}\"}\n\n".utf8))) == [#"{"a":"q\"}"}"#])
    }

    @Test func oneValueOverManyFeedsByteByByte() {
        var s = JSONStream(limit: 1 << 20)
        let text = #"{"execute": "query-version", "id": {"n": [1, 2]}}  {"execute":"x"}"#
        var out: [String] = []
        for b in text.utf8 { out += texts(s.feed([b])) }
        #expect(out == [#"{"execute": "query-version", "id": {"n": [1, 2]}}"#, #"{"execute":"x"}"#])
    }

    @Test func strayScalarsAndClosersArePiecesOfTheirOwn() {
        var s = JSONStream(limit: 1 << 20)
        #expect(texts(s.feed(Array("42 true}\"s\"{}".utf8))) == ["42", "true", "}", "\"s\"", "{}"])
        // A scalar ends only when something follows it.
        #expect(texts(s.feed(Array("12".utf8))) == [])
        #expect(texts(s.feed(Array("3\n".utf8))) == ["123"])
        #expect(texts(s.feed(Array(":{}".utf8))) == [":", "{}"])
    }

    @Test func anUnfinishedValuePastTheLimitIsRefusedAndTheStreamStartsAgain() {
        var s = JSONStream(limit: 16)
        #expect(s.feed(Array(#"{"a": "0123456789abcdef"#.utf8)) == [.tooLong])
        #expect(texts(s.feed(Array("{}".utf8))) == ["{}"])
        // Whitespace between values is not kept, so it never counts against the limit.
        #expect(texts(s.feed(Array(String(repeating: " ", count: 100).utf8) + Array("{}".utf8))) == ["{}"])
    }

    /// Through the real server: no newlines, several commands in one write, one byte at a time,
    /// garbage answered with QEMU's errors while the session goes on.
    @Test func theServerAnswersCommandsAsTheyComplete() throws {
        let path = QMPServerTests.socketPath()
        let server = try QMPServer(path: path, logger: QMPServerTests.logger) { command, _, _ in .string(command) }
        server.start()
        defer { server.stop() }
        let c = try QMPServerTests.Client(path)
        c.send(#"{"execute":"qmp_capabilities"}{"execute":"one","id":1}"#)
        #expect(c.line()?.contains(#""return": {}"#) == true)
        #expect(c.line()?.contains(#""return": "one""#) == true)
        for b in #"{"execute": "two", "id": 2}"#.utf8 { c.send(String(decoding: [b], as: UTF8.self)) }
        #expect(c.line()?.contains(#""return": "two""#) == true)
        c.send(#"[1]{"execute": }{"id": 3}{"execute": 4}{"execute": "x", "bogus": 1}"#)
        #expect(c.line()?.contains("QMP input must be a JSON object") == true)
        #expect(c.line()?.contains("JSON parse error") == true)
        #expect(c.line()?.contains("QMP input lacks member 'execute'") == true)
        #expect(c.line()?.contains("QMP input member 'execute' must be a string") == true)
        #expect(c.line()?.contains("QMP input member 'bogus' is unexpected") == true)
        c.send(#"{"execute": "three"}"#)
        #expect(c.line()?.contains(#""return": "three""#) == true)
    }

    @Test func theGreetingSaysWhichQEMUWeFollowAndOurVersion() throws {
        guard case let .object(members) = QMPServer.versionInfo,
              case let .string(package)? = members.first(where: { $0.key == "package" })?.value else {
            Issue.record("no package in the version")
            return
        }
        #expect(package.hasPrefix("vduse-export \(VDUSEExportVersion.string)"))
    }
}

/// Nodes and iothreads added and removed at run time (QMP blockdev-add/-del, object-add/-del),
/// with QEMU's refusals.
@Suite struct RunTimeNodeTests {
    func configuration() throws -> ServeConfiguration {
        try ServeConfiguration.build(objects: ["iothread,id=io0"], blockdevs: [
            "driver=file,node-name=f0,filename=/dev/null", "driver=raw,node-name=r0,file=f0",
        ], exports: ["type=vduse-blk,id=e0,node-name=r0,name=d0,iothread=io0"],
           into: ServeConfiguration(openProbe: { _, _ in .regularFile }))
    }

    @Test func aNodeInUseIsRefusedAndAFreeOneDeleted() throws {
        var c = try configuration()
        #expect(throws: OptionError("Node r0 is in use")) { try c.removeBlockdev(nodeName: "r0") }
        #expect(throws: OptionError("Block device f0 is in use")) { try c.removeBlockdev(nodeName: "f0") }
        #expect(throws: OptionError("Failed to find node with node-name='nope'")) { try c.removeBlockdev(nodeName: "nope") }
        try c.addBlockdev(BlockNodeOptions(try JSONParser.parse(#"{"driver": "null-co", "node-name": "z0", "size": 4096}"#), syntax: .json))
        #expect(throws: OptionError("Duplicate nodes with node-name='z0'")) {
            try c.addBlockdev(BlockNodeOptions(try JSONParser.parse(#"{"driver": "null-co", "node-name": "z0"}"#), syntax: .json))
        }
        #expect(c.nodeNames == ["f0", "r0", "z0"])
        try c.removeBlockdev(nodeName: "z0")
        c.removeExport(id: "e0")
        try c.removeBlockdev(nodeName: "r0")
        try c.removeBlockdev(nodeName: "f0")
        #expect(c.nodeNames.isEmpty && c.context.nodes.isEmpty)
    }

    @Test func anIOThreadInUseIsRefusedAndAFreeOneDeleted() throws {
        var c = try configuration()
        #expect(throws: OptionError("object 'io0' is in use, can not be deleted")) { try c.removeObject(id: "io0") }
        #expect(throws: OptionError("object 'io9' not found")) { try c.removeObject(id: "io9") }
        let id = try c.addObject(try JSONParser.parse(#"{"qom-type": "iothread", "id": "io1"}"#), syntax: .json)
        #expect(id == "io1" && c.iothreads == ["io0", "io1"])
        try c.removeObject(id: "io1")
        #expect(c.iothreads == ["io0"])
    }
}
