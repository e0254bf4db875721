import Foundation

/// The part of swift-argument-parser's `--experimental-dump-help` output (serialization version 0)
/// that the manual uses. Decoded here rather than through ArgumentParserToolInfo, which the
/// argument parser does not export as a product.
struct ToolInfo: Decodable {
    let serializationVersion: Int
    let command: CommandInfo
}

struct CommandInfo: Decodable {
    let commandName: String
    let abstract: String?
    let discussion: String?
    let shouldDisplay: Bool?
    let arguments: [ArgumentInfo]?
    let subcommands: [CommandInfo]?

    var visibleArguments: [ArgumentInfo] {
        (arguments ?? []).filter { $0.shouldDisplay && $0.preferredName?.name != "help" && $0.preferredName?.name != "version" }
    }

    var visibleSubcommands: [CommandInfo] {
        (subcommands ?? []).filter { $0.shouldDisplay != false && $0.commandName != "help" }
    }
}

struct ArgumentInfo: Decodable {
    enum Kind: String, Decodable { case positional, option, flag }
    struct Name: Decodable {
        let kind: String  // long, short, longWithSingleDash
        let name: String
        var spelled: String { kind == "short" ? "-\(name)" : kind == "long" ? "--\(name)" : "-\(name)" }
    }

    let kind: Kind
    let names: [Name]?
    let preferredName: Name?
    let valueName: String?
    let abstract: String?
    let discussion: String?
    let defaultValue: String?
    let isOptional: Bool
    let isRepeating: Bool
    let shouldDisplay: Bool
}
