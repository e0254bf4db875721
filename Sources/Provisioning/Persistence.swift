import Foundation
import Kernel
import Glibc
import Wire

extension PersistentExports {
    /// The configuration file. systemd splits `$VDUSE_EXPORT_ARGS` at whitespace and gives quotes,
    /// backslashes and `$` meaning in environment files, so arguments holding them are refused
    /// rather than silently changed.
    public static func configText(name: String, serveArguments: [String]) throws(ProvisioningError) -> String {
        let unsafe = Set(" \t\n\"'\\$%;`")
        if let bad = serveArguments.first(where: { $0.contains(where: unsafe.contains) }) {
            throw ProvisioningError(.invalidOptions, "cannot persist '\(name)': the argument '\(bad)' contains whitespace, a quote, '\\', '$', '%', ';' or '`', which a systemd environment file cannot carry")
        }
        return """
            # vduse-export \(name): written by `vduse-export add --persist`, removed by `vduse-export del \(name)`.
            # Read by \(unit(name)) at boot.
            VDUSE_EXPORT_ARGS=\(serveArguments.joined(separator: " "))

            """
    }

    /// Orders the unit after the mounts that hold the image (and makes them required).
    /// A network export waits for the network instead.
    public static func dropInText(name: String, image: String) -> String {
        """
        # vduse-export \(name): written by `vduse-export add --persist`, removed by `vduse-export del \(name)`.
        [Unit]
        \(NetworkURI.isURI(image) ? "Wants=network-online.target\nAfter=network-online.target" : "RequiresMountsFor=\(image)")

        """
    }

    /// Writes what differs and enables the unit. Returns whether a file changed.
    @discardableResult
    public func persist(name: String, serveArguments: [String], image: String,
                        systemctl: ([String]) throws(ProvisioningError) -> Void = Self.systemctl) throws(ProvisioningError) -> Bool {
        let config = try Self.configText(name: name, serveArguments: serveArguments)
        var changed = try Self.writeIfChanged(configPath(name), config, directory: configDirectory, directoryMode: 0o755)
        changed = try Self.writeIfChanged(dropInPath(name), Self.dropInText(name: name, image: image),
                                          directory: dropInDirectory(name), directoryMode: 0o755) || changed
        try systemctl(["enable", "--quiet", Self.unit(name)])
        return changed
    }

    /// After a live snapshot, commit or mirror of persistent export `name`: its configuration
    /// names `image` (a path or network URI; `format` for a file) instead, so that the unit, at
    /// boot or `systemctl restart`, serves what the disk is on now. The server calls this before
    /// the switch takes effect, once its record names the new image (a new file renamed over the
    /// old one), and again when a server resumes from such a record (its predecessor may have died
    /// in between).
    /// Only a configuration of one export is rewritten (`add --persist` writes such): its
    /// `--blockdev` nodes are replaced by the new image's, `--object` and `--export` kept. The
    /// drop-in follows too (new mounts to wait for), but is not needed for the switch: failing
    /// to write it is only reported (systemd reads it at its next reload).
    public func follow(name: String, image: String, format: AddRequest.Format,
                       warn: (String) -> Void = { _ in }) throws(ProvisioningError) {
        try write(followed: try followedText(name: name, image: image, format: format), name: name, image: image, warn: warn)
    }

    /// Writes `config`, which `followedText` made for `image`, and the drop-in for `image`.
    public func write(followed config: String, name: String, image: String,
                      warn: (String) -> Void = { _ in }) throws(ProvisioningError) {
        _ = try Self.writeIfChanged(configPath(name), config, directory: configDirectory, directoryMode: 0o755)
        do {
            _ = try Self.writeIfChanged(dropInPath(name), Self.dropInText(name: name, image: image),
                                        directory: dropInDirectory(name), directoryMode: 0o755)
        } catch {
            warn("\(error) (the unit keeps waiting for the mounts it waited for)")
        }
    }

    /// The configuration of `name` as `follow` would write it (nothing written): one that cannot
    /// follow is refused here.
    public func followedText(name: String, image: String, format: AddRequest.Format) throws(ProvisioningError) -> String {
        let path = configPath(name)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ProvisioningError(.kernel, "cannot read \(path), which makes '\(name)' persistent")
        }
        let arguments = try Self.followedArguments(Self.serveArguments(in: text), name: name, image: image, format: format)
        return try Self.configText(name: name, serveArguments: arguments)
    }

    /// The `serve` arguments of a configuration file (`VDUSE_EXPORT_ARGS=`, split as systemd does).
    static func serveArguments(in text: String) -> [String] {
        for line in text.split(separator: "\n") where line.hasPrefix("VDUSE_EXPORT_ARGS=") {
            return line.dropFirst("VDUSE_EXPORT_ARGS=".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        }
        return []
    }

    /// `arguments` with their block nodes replaced by `image`'s (the export's node name kept).
    static func followedArguments(_ arguments: [String], name: String, image: String,
                                  format: AddRequest.Format) throws(ProvisioningError) -> [String] {
        var kept: [String] = [], exports: [String] = []
        var i = 0
        while i < arguments.count {
            let option = arguments[i], value = i + 1 < arguments.count ? arguments[i + 1] : nil
            switch option {
            case "--blockdev":
                i += 2
                continue
            case "--export":
                if let value { exports.append(value) }
                fallthrough
            default:
                kept.append(option)
            }
            i += 1
        }
        guard exports.count == 1, let export = exports.first else {
            throw ProvisioningError(.invalidOptions, "the configuration of persistent export '\(name)' does not hold exactly one --export: it cannot follow the switch (edit it by hand, or add the export with `add --persist`)")
        }
        let node = export.split(separator: ",").first { $0.hasPrefix("node-name=") }.map { String($0.dropFirst("node-name=".count)) }
        guard node == "disk0" else {
            throw ProvisioningError(.invalidOptions, "the configuration of persistent export '\(name)' names its node otherwise than `add --persist` does (node-name=disk0): it cannot follow the switch")
        }
        var request = AddRequest(image: image)
        request.format = NetworkURI.isURI(image) ? nil : format
        let blockdevs = request.blockdevs.flatMap { ["--blockdev", $0] }
        // The nodes go before the export that names them; objects (iothreads) stay first.
        let at = kept.firstIndex(of: "--export") ?? kept.count
        kept.insert(contentsOf: blockdevs, at: at)
        return kept
    }

    /// Disables the unit and removes the configuration and drop-in. Returns whether there was any.
    @discardableResult
    public func forget(name: String, systemctl: ([String]) throws(ProvisioningError) -> Void = Self.systemctl) throws(ProvisioningError) -> Bool {
        let fm = FileManager.default
        guard fm.fileExists(atPath: configPath(name)) || fm.fileExists(atPath: dropInPath(name)) else { return false }
        try systemctl(["disable", "--quiet", Self.unit(name)])
        unlink(dropInPath(name))
        rmdir(dropInDirectory(name))  // only if nothing else is in it
        unlink(configPath(name))
        return true
    }

    static func writeIfChanged(_ path: String, _ text: String, directory: String, directoryMode: mode_t) throws(ProvisioningError) -> Bool {
        if (try? String(contentsOfFile: path, encoding: .utf8)) == text { return false }
        if mkdir(directory, directoryMode) != 0 && errno != EEXIST {
            throw ExportError(.kernel, "cannot create \(directory)", because: SystemError("mkdir", errno: errno))
        }
        // Temporary file and rename: a crash never leaves a half-written configuration for boot.
        let tmp = path + ".tmp"
        do {
            try FileReplacement.replace(path, temporary: tmp, mode: 0o644, with: Data(text.utf8))
        } catch {
            switch error {
            case let .create(e): throw ExportError(.kernel, "cannot write \(tmp)", because: e)
            case let .write(e): throw ExportError(.kernel, "cannot write \(path)", because: e)
            }
        }
        return true
    }

    /// Runs systemctl; without a running systemd (a chroot, an image build) it edits the links only.
    public static func systemctl(_ arguments: [String]) throws(ProvisioningError) {
        let command = "systemctl " + arguments.joined(separator: " ")
        let status: Int32, message: String
        do {
            (status, message) = try Subprocess.runCapturingStderr("/bin/systemctl", arguments)
        } catch {
            throw ProvisioningError(.kernel, "cannot run \(command): \(error.reason)")
        }
        guard status == 0 else {
            throw ProvisioningError(.kernel, "\(command) failed (exit \(status)): \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}
