import Glibc

/// Experimental data-path settings, read once from `VDUSE_EXPORT_TUNING` (`key=value,...`) so
/// that `bench/run` can measure a lever against the default in the same boot without a new
/// command-line option. Unknown keys and bad values are ignored (with the defaults kept): this is
/// a measuring aid, not an interface. docs/performance.md lists the keys and what each measured.
package struct DataPathTuning: Sendable, Equatable {
    /// Busy-poll the rings for up to this long before the iothread sleeps in epoll (0: never).
    package var pollMicroseconds = 0
    /// The device's bounce buffer in MiB (0: DevicePolicy's size).
    package var bounceMiB = 0
    /// Where each queue's interrupt work runs: a hex CPU mask, "driver" (the driver's mask), or
    /// empty (DevicePolicy: the first CPU of the driver's mask).
    package var irqMask = ""
    /// Largest read done inline on a memory-backed image; bigger ones go to io_uring.
    package var inlineReadLimit = 128 * 1024
    /// Inline transfers start with one preadv/pwritev over all segments (off: one call per segment).
    package var vectoredInline = true

    /// null-co reads zero the driver's buffers with plain stores (off: glibc's memset, which is
    /// `rep stosb` on ERMS CPUs and costs 14× more under QEMU's TCG).
    package var nullFillStores = true

    /// Largest copy request of a commit or mirror job in KiB: contiguous dirty chunks are read
    /// and written together up to this (at least one chunk).
    package var copyKiB = 64

    package init() {}

    package init(parsing text: String) {
        for item in text.split(separator: ",") {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "poll-us": pollMicroseconds = Int(kv[1]).map { min(max($0, 0), 1_000_000) } ?? pollMicroseconds
            case "bounce-mb": bounceMiB = Int(kv[1]).map { min(max($0, 0), 1024) } ?? bounceMiB
            case "irq-mask": irqMask = kv[1] == "driver" || !kv[1].isEmpty && kv[1].allSatisfy(\.isHexDigit) ? kv[1] : irqMask
            case "vectored": vectoredInline = kv[1] != "0"
            case "null-fill": nullFillStores = kv[1] != "memset"
            case "copy-kb": copyKiB = Int(kv[1]).map { min(max($0, 0), 64 * 1024) } ?? copyKiB
            case "inline-read-kb": inlineReadLimit = Int(kv[1]).map { max($0, 0) * 1024 } ?? inlineReadLimit
            default: continue
            }
        }
    }

    /// The process's settings.
    package static let current = DataPathTuning(parsing: getenv("VDUSE_EXPORT_TUNING").map { String(cString: $0) } ?? "")
}
