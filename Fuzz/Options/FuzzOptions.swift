import FuzzSupport
import QAPI

/// One input is text: each line goes through the JSON parser (QMP lines), the keyval parser, and
/// then all lines together through the serve configuration (objects, blockdevs, exports by their
/// first character), with an open probe that touches no file. Errors are fine; crashes are not.
func fuzzOne(_ bytes: UnsafeRawBufferPointer) {
    let text = String(decoding: bytes, as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var objects: [String] = [], blockdevs: [String] = [], exports: [String] = []
    for line in lines {
        _ = try? JSONParser.parse(line)
        _ = try? KeyvalParser.parse(line, impliedKey: "driver")
        _ = try? ServeConfiguration.parseSpec(line, impliedKey: nil)
        switch line.utf8.first.map({ $0 % 3 }) {
        case 0: objects.append(line)
        case 1: blockdevs.append(line)
        default: exports.append(line)
        }
    }
    let probe = ServeConfiguration(openProbe: { _, _ in .regularFile })
    _ = try? ServeConfiguration.build(objects: objects, blockdevs: blockdevs, exports: exports, into: probe)
}

@main struct Main {
    static func main() { fuzzMain(fuzzOne) }
}
