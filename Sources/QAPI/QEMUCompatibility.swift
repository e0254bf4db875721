/// Which QEMU our QMP and option behaviour follows (the multi-threading export interface of
/// commit 277fc1ce18, QEMU 11.0), and our own version (packaging/changelog's, checked by a test).
public enum QEMUCompatibility {
    public static let major = 11
    public static let minor = 0
    public static let micro = 0
    public static let toolVersion = "0.1.0"
}
