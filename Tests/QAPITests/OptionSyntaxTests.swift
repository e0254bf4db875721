import Foundation
import Testing
@testable import QAPI

/// The option syntaxes under the checks: sizes, JSON (RFC 8259 exactly) and keyval nesting.
@Suite struct OptionSyntaxTests {
    /// docs/options.md promised 0x hex sizes; the parser refused them.
    @Test func hexSizes() {
        #expect(OptionReader.parseSize("0x1000") == 4096)
        #expect(OptionReader.parseSize("0X200") == 512)
        #expect(OptionReader.parseSize("0x") == nil)
        #expect(OptionReader.parseSize("0x1g") == nil)
    }

    /// The JSON parser accepted 01, 1. and 1e, and refused surrogate pairs.
    @Test(arguments: ["01", "-01", "1.", "1e", "1e+", "-", "1.e5", "\"\\ud83d\"", "\"\\ud83d\\u0041\"", "\"\\udc00\""])
    func invalidJSONIsRefused(text: String) {
        #expect(throws: OptionError.self) { try JSONParser.parse(text) }
    }

    @Test(arguments: [("0", "0"), ("-0", "-0"), ("10", "10"), ("1.5e-3", "1.5e-3"), ("1E9", "1E9")])
    func validNumbersAreKeptAsWritten(text: String, kept: String) throws {
        #expect(try JSONParser.parse(text) == .number(kept))
    }

    @Test func surrogatePairsDecodeToOneCharacter() throws {
        #expect(try JSONParser.parse("\"\\ud83d\\ude00 \\u00e9\"") == .string("😀 é"))
    }

    /// One 20000-part dotted key took 17-20 s of CPU and 420 MB (the prefix was re-joined at every
    /// depth); now well under a second. The thread's CPU time is measured, not the wall clock, so
    /// a loaded machine (the sanitizer runs share it with the test bed) does not fail the test.
    @Test func longDottedKeyIsQuick() {
        let key = Array(repeating: "a", count: 20000).joined(separator: ".")
        func cpuSeconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let start = cpuSeconds()
        _ = try? KeyvalParser.parse("\(key)=1", impliedKey: nil)
        #expect(cpuSeconds() - start < 5)
    }

    @Test func deepButBoundedKeyStillParses() throws {
        let key = Array(repeating: "a", count: KeyvalParser.maxDepth).joined(separator: ".")
        var v = try KeyvalParser.parse("\(key)=1", impliedKey: nil)
        var depth = 0
        while case let .object(m) = v { v = m[0].value; depth += 1 }
        #expect(depth == KeyvalParser.maxDepth && v == .string("1"))
    }

    /// QAPI `int` members (a job's speed): integers only, negative ones too (the command refuses those).
    @Test func signedIntegers() throws {
        func read(_ json: String) throws(OptionError) -> Int64? {
            var r = try OptionReader(try JSONParser.parse(json), syntax: .json)
            return try r.signed("speed")
        }
        #expect(try read(#"{"speed": -1}"#) == -1)
        #expect(try read(#"{"speed": 9223372036854775807}"#) == Int64.max)
        #expect(try read("{}") == nil)
        for bad in [#"{"speed": 1.5}"#, #"{"speed": "1"}"#, #"{"speed": 9223372036854775808}"#] {
            #expect(throws: OptionError("Invalid parameter type for 'speed', expected: integer")) { try read(bad) }
        }
    }
}
