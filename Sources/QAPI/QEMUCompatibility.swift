/// Which QEMU our QMP and option behaviour follows (the multi-threading export interface of
/// commit 277fc1ce18, QEMU 11.0). Our own version is `VDUSEExportVersion` (Wire).
public enum QEMUCompatibility {
    public static let major = 11
    public static let minor = 0
    public static let micro = 0
}
