import Foundation
import Testing

/// docs/architecture.md describes every target of Package.swift: a target added, renamed or split
/// off without the page saying what it holds and what it depends on fails here.
@Suite struct ArchitectureDocTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The names of `.target`, `.executableTarget`, `.testTarget`, `.systemLibrary`, `.binaryTarget`,
    /// `.plugin` and `.macro` entries, in the order Package.swift declares them; line comments
    /// (a target commented out) are not entries.
    static func targetNames(inManifest manifest: String) throws -> [String] {
        let comments = try NSRegularExpression(pattern: #"(?m)(^|\s)//.*$"#)
        let text = comments.stringByReplacingMatches(in: manifest, range: NSRange(manifest.startIndex..., in: manifest),
                                                     withTemplate: "$1")
        let pattern = #"\.(?:target|executableTarget|testTarget|systemLibrary|binaryTarget|plugin|macro)\(\s*name:\s*"([^"]+)""#
        let regex = try NSRegularExpression(pattern: pattern)
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).compactMap { match in
            Range(match.range(at: 1), in: text).map { String(text[$0]) }
        }
    }

    /// Targets of Package.swift that docs/architecture.md does not name (in backquotes, as its
    /// table does: a bare word such as Core would be found in any prose).
    static func undocumented(targets: [String], in page: String) -> [String] {
        targets.filter { !page.contains("`\($0)`") }
    }

    @Test func theParserFindsEveryKindOfTarget() throws {
        let manifest = """
            .target(
                name: "A",
                dependencies: []),
            .executableTarget(name: "b-tool", dependencies: ["A"]),
            .testTarget(name: "ATests", dependencies: ["A"]),
            .systemLibrary(name: "CLib"),
            .product(name: "NotATarget", package: "p"),
            // .target(name: "CommentedOut"),
            .package(url: "https://example.org/x", from: "1.0.0"), .target(name: "AfterAURL"),
            """
        #expect(try Self.targetNames(inManifest: manifest) == ["A", "b-tool", "ATests", "CLib", "AfterAURL"])
        #expect(Self.undocumented(targets: ["A", "b-tool"], in: "| `A` | holds |") == ["b-tool"])
    }

    @Test func everyTargetIsInTheArchitecturePage() throws {
        let manifest = try String(contentsOf: Self.repo.appendingPathComponent("Package.swift"), encoding: .utf8)
        let page = try String(contentsOf: Self.repo.appendingPathComponent("docs/architecture.md"), encoding: .utf8)
        let targets = try Self.targetNames(inManifest: manifest)
        // Not vacuous: the manifest has its library, tool and test targets.
        #expect(targets.count >= 20, "only \(targets) found in Package.swift")
        for known in ["Core", "Kernel", "vduse-export", "CoreTests"] { #expect(targets.contains(known)) }
        let missing = Self.undocumented(targets: targets, in: page)
        #expect(missing.isEmpty, "docs/architecture.md does not describe these targets of Package.swift: \(missing)")
    }
}
