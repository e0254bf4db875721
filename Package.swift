// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first; each target may import only those listed as its dependencies, so the
// compiler keeps the direction (see docs/architecture.md):
//   CVDUSE → Kernel → Virtio → BlockBackends (uses QCOW2, the pure qcow2 engine) → Core (block server) → QMP → Provisioning → vduse-export
//   QAPI (options, checks, plans) is pure and used from BlockBackends upwards (backends open its specs).
let package = Package(
    name: "vduse-export",
    products: [
        .executable(name: "vduse-export", targets: ["vduse-export"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // Kernel interface definitions (VDUSE, virtio), ioctl wrappers, liburing and libnl glue:
        // only what Swift cannot express. libnl's headers stay inside the .c file.
        .target(
            name: "CVDUSE",
            cSettings: [.unsafeFlags(["-I/usr/include/libnl3"])],
            linkerSettings: [
                .linkedLibrary("nl-genl-3"), .linkedLibrary("nl-3"), .linkedLibrary("uring"),
            ]
        ),
        // Linux interfaces: owned fds, errno-keeping errors, eventfd, io_uring, VDUSE, vdpa netlink.
        // Returns raw mappings and numbers, never virtio types.
        // The serving phase's confinement: capabilities, no_new_privs, a seccomp allow-list
        // (Debian libseccomp-dev).
        .target(name: "CConfine", linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "Kernel", dependencies: ["CVDUSE", "CConfine", .product(name: "SystemPackage", package: "swift-system")]),
        // QEMU's QAPI model, keyval/JSON parsers and create-time checks. Pure.
        .target(name: "QAPI"),
        // Split virtqueues, descriptor chains over checked driver memory, virtio-blk request
        // parsing. Pure given numbers and memory (CVDUSE only for memory barriers).
        .target(name: "Virtio", dependencies: ["CVDUSE"]),
        // What the qcow2 engine needs from C: zlib (raw deflate) and zstd decompression of
        // compressed clusters, and fallocate to punch holes for freed clusters.
        .target(
            name: "CQcow2",
            linkerSettings: [.linkedLibrary("z"), .linkedLibrary("zstd")]
        ),
        // libnbd (Debian libnbd-dev for the header; libnbd0 loaded on first use): the NBD client library.
        .target(name: "CNBD"),
        // librbd/librados (Debian librbd-dev; no pkg-config file there): opening an image and
        // async requests whose completions wake the iothread through an eventfd. Loaded with
        // dlopen on first use (shim.c), so only their headers are needed to build.
        .target(name: "CRBD"),
        // The qcow2 image format, independent of VDUSE: open, map, read, write, allocate. Pure
        // file I/O (Glibc), so it is tested on the host against qemu-img.
        .target(name: "QCOW2", dependencies: ["CQcow2"]),
        // The storage behind an export, behind one interface (file/block device, null, qcow2, nbd, ...).
        .target(name: "BlockBackends", dependencies: ["Kernel", "Virtio", "QCOW2", "QAPI", "CNBD", "CRBD"]),
        // The block server: iothreads, queue servers, VDUSE exports, the export manager.
        .target(
            name: "Core",
            dependencies: ["Kernel", "Virtio", "BlockBackends", "QAPI", "QCOW2", .product(name: "Logging", package: "swift-log")]
        ),
        // The QMP control socket and client.
        .target(name: "QMP", dependencies: ["Core", "QAPI", "Kernel", .product(name: "Logging", package: "swift-log")]),
        // add/list/del, state records, readiness, host integration, the serve loop; QCOW2 to create
        // add --overlay's overlays.
        .target(
            name: "Provisioning",
            dependencies: ["Core", "QMP", "QAPI", "Kernel", "QCOW2", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "vduse-export",
            dependencies: [
                "Provisioning", "Core", "QAPI", "Kernel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A virtio driver in memory (split ring, chains, requests) for tests and the benchmark.
        .target(name: "VirtioDriverSim", dependencies: ["Virtio"]),
        // Host-side benchmark of our own request path: the in-memory driver against the real queue
        // server (bench/request-path).
        .executableTarget(name: "request-path-bench", dependencies: ["Core", "VirtioDriverSim", "BlockBackends", "Virtio", "Kernel",
                                                               .product(name: "Logging", package: "swift-log")]),
        // Monitor commands through librados for the ceph test-bed scenario (the python CLI is too
        // slow under TCG); not installed.
        .executableTarget(name: "ceph-mon-command", linkerSettings: [.linkedLibrary("rados")]),
        // Writes the man page and shell completions from the built command's own parser definitions
        // (scripts/gen-docs, scripts/build-deb); not installed.
        .executableTarget(
            name: "vduse-export-docs",
            dependencies: ["Provisioning", "Kernel", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // libFuzzer targets (Fuzz/README.md, scripts/fuzz): with -DFUZZING libFuzzer supplies main;
        // without, each replays the files it is given.
        .target(name: "FuzzSupport", path: "Fuzz/Support"),
        .executableTarget(name: "fuzz-qcow2", dependencies: ["QCOW2", "FuzzSupport"], path: "Fuzz/Qcow2", exclude: ["corpus"]),
        .executableTarget(name: "fuzz-virtio", dependencies: ["Virtio", "FuzzSupport"], path: "Fuzz/Virtio", exclude: ["corpus"]),
        .executableTarget(name: "fuzz-queue", dependencies: ["Core", "BlockBackends", "Virtio", "Kernel", "FuzzSupport",
                                                       .product(name: "Logging", package: "swift-log")],
                          path: "Fuzz/Queue", exclude: ["corpus"]),
        .executableTarget(name: "fuzz-nbd", dependencies: ["BlockBackends", "FuzzSupport"], path: "Fuzz/NBD", exclude: ["corpus"]),
        .executableTarget(name: "fuzz-inflight", dependencies: ["Core", "FuzzSupport"], path: "Fuzz/Inflight", exclude: ["corpus"]),
        .executableTarget(name: "fuzz-options", dependencies: ["QAPI", "FuzzSupport"], path: "Fuzz/Options", exclude: ["corpus"]),
        .testTarget(name: "CoreTests", dependencies: ["Core", "Virtio", "BlockBackends", "Kernel", "QAPI", "QMP", "Provisioning",
                                                      "VirtioDriverSim"]),
        .testTarget(name: "QCOW2Tests", dependencies: ["QCOW2"]),
    ]
)
