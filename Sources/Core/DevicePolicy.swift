import BlockBackends

/// How we size and place a VDUSE device's kernel resources (measured in docs/performance.md).
package enum DevicePolicy {
    /// The bounce buffer: every page of it that the kernel ever uses stays allocated (and mapped
    /// in the server) for the device's life, so a 64 MiB default costs up to 64 MiB per disk. 16 MiB
    /// per queue (QD32 of 512 KiB requests in flight), at most the kernel's 64 MiB default; when
    /// it is full the block layer waits and retries, nothing fails. `bounce-mb` overrides it.
    package static func bounceBytes(numQueues: Int, tuning: DataPathTuning = .current) -> Int {
        if tuning.bounceMiB > 0 { return tuning.bounceMiB << 20 }
        return min(max(numQueues, 1) * 16, 64) << 20
    }

    /// The CPU mask for a queue's interrupt work: the driver spreads it round-robin over the
    /// CPUs of the queue's mask; one CPU (the mask's first) keeps the completions in one place.
    /// nil: leave the driver's mask (`irq-mask=driver`), or it could not be read.
    package static func interruptMask(driverMask: String, tuning: DataPathTuning = .current) -> String? {
        switch tuning.irqMask {
        case "driver": return nil
        case "": return firstCPUMask(of: driverMask)
        default: return tuning.irqMask
        }
    }

    /// "f0,00000003" (kernel cpumask format: 32-bit hex words, most significant first) -> the
    /// mask of its lowest CPU, in the same format ("1"), or nil for an empty or unreadable mask.
    package static func firstCPUMask(of mask: String) -> String? {
        let words = mask.trimmingWhitespace.split(separator: ",")
        guard !words.isEmpty else { return nil }
        for (k, word) in words.reversed().enumerated() {
            guard let value = UInt32(word, radix: 16) else { return nil }
            guard value != 0 else { continue }
            let bit = value.trailingZeroBitCount
            let low = String(UInt32(1) << bit, radix: 16)
            return ([low] + Array(repeating: "00000000", count: k)).joined(separator: ",")
        }
        return nil
    }
}

private extension String {
    var trimmingWhitespace: Substring {
        let s = drop { $0.isWhitespace }
        return s.dropLast(s.reversed().prefix { $0.isWhitespace }.count)
    }
}
