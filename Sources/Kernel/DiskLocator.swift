import Foundation
import Glibc

/// Finds the disk that virtio_blk made for a vdpa device.
public enum DiskLocator {
    /// Waits (bounded) for /sys/bus/vdpa/devices/NAME/virtio*/block/vdX and its /dev node.
    public static func waitForDisk(vdpaName: String, timeout: TimeInterval = 10) throws -> String {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let deadline = Deadline.after(seconds: timeout)
        let fm = FileManager.default
        while !deadline.hasPassed {
            if let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
               let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first {
                let node = "/dev/\(disk)"
                if fm.fileExists(atPath: node) { return node }
            }
            // Bound to another bus driver (vhost_vdpa): no disk will ever come.
            if let d = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map({ ($0 as NSString).lastPathComponent }),
               d != "virtio_vdpa" { break }
            usleep(10_000)
        }
        let driver = (try? fm.destinationOfSymbolicLink(atPath: "\(base)/driver")).map { ($0 as NSString).lastPathComponent }
        if driver == "vhost_vdpa" {
            throw ExportError("vdpa device '\(vdpaName)' was bound to vhost_vdpa, not virtio_vdpa: unload vhost_vdpa (modprobe -r vhost_vdpa) to get a /dev/vdX")
        }
        throw ExportError("no disk appeared for vdpa device '\(vdpaName)' within \(Int(timeout)) s (driver: \(driver ?? "none"); is virtio_vdpa loaded?)")
    }
}

extension DiskLocator {
    /// The disk of a vdpa device now, if any (no waiting).
    public static func currentDisk(vdpaName: String) -> String? {
        let base = "/sys/bus/vdpa/devices/\(vdpaName)"
        let fm = FileManager.default
        guard let virtio = (try? fm.contentsOfDirectory(atPath: base))?.first(where: { $0.hasPrefix("virtio") }),
              let disk = (try? fm.contentsOfDirectory(atPath: "\(base)/\(virtio)/block"))?.first else { return nil }
        return "/dev/\(disk)"
    }
}
