// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "vduse-export",
    products: [
        .executable(name: "vduse-export", targets: ["vduse-export"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
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
        .target(
            name: "Core",
            dependencies: [
                "CVDUSE",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "vduse-export",
            dependencies: [
                "Core",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What the qcow2 engine needs from C: zlib (raw deflate) and zstd decompression of
        // compressed clusters, and fallocate to punch holes for freed clusters.
        .target(
            name: "CQcow2",
            linkerSettings: [.linkedLibrary("z"), .linkedLibrary("zstd")]
        ),
        // The qcow2 image format, independent of VDUSE: open, map, read, write, allocate.
        .target(name: "QCOW2", dependencies: ["CQcow2"]),
        .testTarget(name: "CoreTests", dependencies: ["Core"]),
        .testTarget(name: "QCOW2Tests", dependencies: ["QCOW2"]),
    ]
)
