/// This program's version: the upstream part of packaging/changelog's first entry (a unit
/// test keeps the two equal). Shown by `--version`, in records (`list --json`) and to QMP.
public enum VDUSEExportVersion {
    public static let string = "0.1.0"
}
