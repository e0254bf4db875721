import Glibc

/// A shared mapping of driver memory (one VDUSE IOTLB entry), unmapped when the last holder lets
/// go: the address space that found it, and any request still pointing into it.
package final class MappedRegion {
    /// First and last IOVA covered (inclusive, as the kernel reports them).
    package let first: UInt64
    package let last: UInt64
    package let base: UnsafeMutableRawPointer
    package let length: Int
    package let readable: Bool
    package let writable: Bool

    package init(first: UInt64, last: UInt64, base: UnsafeMutableRawPointer, length: Int, readable: Bool, writable: Bool) {
        self.first = first
        self.last = last
        self.base = base
        self.length = length
        self.readable = readable
        self.writable = writable
    }

    deinit { munmap(base, length) }
}
