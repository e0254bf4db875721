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
