// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first; each target may import only those listed as its dependencies, so the
// compiler keeps the direction (see docs/architecture.md):
//   Errors (the error model) under everything; CVDUSE, CIOUring, CVDPANetlink → Kernel; CBarriers → Virtio;
//   Kernel → Virtio → BlockBackends (uses QCOW2, the pure qcow2 engine) → Core (block server) → Server → vduse-export
//   Kernel → Wire (what client and server processes share) → QMP (client) → Provisioning (client verbs) → vduse-export
//   QAPI (options, checks, plans) is pure and used from BlockBackends upwards (backends open its specs).
// The client side (Wire, QMP, Provisioning) cannot import Core: it talks to servers through
// their QMP sockets, state records and readiness pipes only.
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
        // The one error model: ExportError (exit status, message, cause), ExitStatus, and
        // SystemError, whose errno text is rendered in one place. Pure; Kernel re-exports it.
        .target(name: "Errors", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        // Kernel interface definitions (VDUSE, virtio), ioctl wrappers, process spawning and the
        // crash handlers: only what Swift cannot express.
        .target(name: "CVDUSE"),
        // Fences and atomic 16-bit loads/stores on memory shared with the kernel (rings, the reconnect log).
        .target(name: "CBarriers"),
        // liburing, whose API is static inline.
        .target(name: "CIOUring", linkerSettings: [.linkedLibrary("uring")]),
        // The vdpa generic netlink family through libnl; libnl's headers stay inside the .c file.
        .target(
            name: "CVDPANetlink",
            cSettings: [.unsafeFlags(["-I/usr/include/libnl3"])],
            linkerSettings: [.linkedLibrary("nl-genl-3"), .linkedLibrary("nl-3")]
        ),
        // Linux interfaces: owned fds, errno-keeping errors, eventfd, io_uring, VDUSE, vdpa netlink.
        // Returns raw mappings and numbers, never virtio types.
        // The serving phase's confinement: capabilities, no_new_privs, a seccomp allow-list
        // (Debian libseccomp-dev).
        .target(name: "CConfine", linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "Kernel", dependencies: ["Errors", "CVDUSE", "CIOUring", "CVDPANetlink", "CConfine", .product(name: "SystemPackage", package: "swift-system")]),
        // QEMU's QAPI model, keyval/JSON parsers and create-time checks. Pure.
        .target(name: "QAPI", dependencies: ["Errors"]),
        // Split virtqueues, descriptor chains over checked driver memory, virtio-blk request
        // parsing. Pure given numbers and memory (CBarriers for the ring's memory ordering).
        .target(name: "Virtio", dependencies: ["CBarriers"]),
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
        .target(name: "QCOW2", dependencies: ["CQcow2", "Errors"]),
        // The storage behind an export, behind one interface (file/block device, null, qcow2, nbd, ...).
        .target(name: "BlockBackends", dependencies: ["Kernel", "Virtio", "QCOW2", "QAPI", "CNBD", "CRBD"]),
        // What client and server processes share: export status and statistics, the state
        // records and their directory, readiness messages, the supervisor's marks, the version.
        .target(name: "Wire", dependencies: ["Kernel"]),
        // The block server: iothreads, queue servers, VDUSE exports, the export manager.
        .target(
            name: "Core",
            dependencies: ["Kernel", "Virtio", "BlockBackends", "QAPI", "QCOW2", "Wire", "CBarriers", .product(name: "Logging", package: "swift-log")]
        ),
        // The QMP client (one-shot commands, sessions with events) and the statistics' QMP shape.
        .target(name: "QMP", dependencies: ["Wire", "QAPI", "Kernel"]),
        // The server process: the serve loop, QMP server and commands, state-record keeping,
        // readiness writer, supervisor, daemonizing, pid file, confinement, orphan cleanup.
        .target(
            name: "Server",
            // Provisioning: the persistent configuration's writer and the network URIs, which a
            // live switch rewrites and a record names (the client never imports Server).
            dependencies: ["Core", "QMP", "Wire", "QAPI", "Kernel", "CVDUSE", "Provisioning",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The client verbs: add/list/del/resize/stats/restart/snapshot/commit/mirror over QMP and
        // the state records, host integration; QCOW2 to create add --overlay's overlays.
        .target(
            name: "Provisioning",
            dependencies: ["Wire", "QMP", "QAPI", "Kernel", "QCOW2", .product(name: "Logging", package: "swift-log")]
        ),
        // Argument parsing; wires the client verbs to the server side's orphan cleanup.
        .executableTarget(
            name: "vduse-export",
            dependencies: [
                "Provisioning", "Server", "Wire", "QAPI", "Kernel",
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
        // Fakes and fixtures the test targets share (a VDUSE device in memory, a backend that holds
        // requests, a queue harness, seeded bytes, temporary directories, the built command). Its
        // members are `package`, so it needs no testable import and builds in release too.
        .target(name: "TestSupport", dependencies: ["Core", "BlockBackends", "Virtio", "Kernel", "Wire", "CVDUSE", "VirtioDriverSim",
                                                    .product(name: "Logging", package: "swift-log")], path: "Tests/TestSupport"),
        // One test target per subject: the library target it is named after (CommandTests: the built
        // command, its generated docs and this manifest against docs/architecture.md).
        .testTarget(name: "ErrorsTests", dependencies: ["Errors", "QAPI"]),
        .testTarget(name: "KernelTests", dependencies: ["Kernel"]),
        .testTarget(name: "QAPITests", dependencies: ["QAPI", "TestSupport"]),
        .testTarget(name: "QCOW2Tests", dependencies: ["QCOW2", "TestSupport"]),
        .testTarget(name: "BlockBackendsTests", dependencies: ["BlockBackends", "Core", "Kernel", "QAPI", "TestSupport", "Virtio", "VirtioDriverSim", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "CoreTests", dependencies: ["BlockBackends", "CVDUSE", "Core", "Kernel", "QAPI", "QCOW2", "TestSupport", "Virtio", "VirtioDriverSim", "Wire", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "WireTests", dependencies: ["Kernel", "TestSupport", "Wire"]),
        .testTarget(name: "ServerTests", dependencies: ["Core", "Kernel", "Provisioning", "QAPI", "QMP", "Server", "TestSupport", "Wire", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "ProvisioningTests", dependencies: ["Kernel", "Provisioning", "QAPI", "QCOW2", "TestSupport", "Wire", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "CommandTests", dependencies: ["TestSupport"]),
    ]
)
