import Glibc
import Testing
import TestSupport
import QAPI
@testable import Provisioning

/// What `add` makes of its image argument: the node options for files, block devices and URIs.
@Suite struct AddRequestTests {
    /// `add /dev/sdX` built driver=file, which QEMU's checks refuse for a block device.
    @Test func addOfABlockDeviceUsesHostDevice() throws {
        let node = try TempDir.make() + "/blk"
        try #require(mknod(node, S_IFBLK | 0o600, dev_t(7 << 8)) == 0, "mknod needs root")  // loop0: major 7, minor 0
        let request = AddRequest(image: node)
        #expect(request.blockdevs.first?.hasPrefix("driver=host_device,") == true)
        let probe = ServeConfiguration(openProbe: { _, _ in .device })
        _ = try ServeConfiguration.build(objects: [], blockdevs: request.blockdevs, exports: [request.exportSpec], into: probe)
        #expect(AddRequest(image: "/etc/hostname").blockdevs.first?.hasPrefix("driver=file,") == true)
    }

    /// add's network URIs: the specs and node options they become, and what they refuse.
    @Test func addURIs() throws {
        #expect(try NetworkURI.nbd("nbd://10.0.0.1/disk") == NBDSpec(server: .inet(host: "10.0.0.1", port: "10809"), export: "disk"))
        #expect(try NetworkURI.nbd("nbd://[::1]:10810/") == NBDSpec(server: .inet(host: "::1", port: "10810")))
        #expect(try NetworkURI.nbd("nbd+unix:///e?socket=/run/s.sock") == NBDSpec(server: .unix(path: "/run/s.sock"), export: "e"))
        #expect(throws: ProvisioningError.self) { try NetworkURI.nbd("nbd+unix:///e") }
        #expect(throws: ProvisioningError.self) { try NetworkURI.nbd("nbd://h/e?x=y") }
        #expect(try NetworkURI.rbd("rbd:p/ns/i@s:conf=/c:id=u")
            == RBDSpec(pool: "p", namespace: "ns", image: "i", snapshot: "s", conf: "/c", user: "u"))
        #expect(throws: ProvisioningError.self) { try NetworkURI.rbd("rbd:p") }
        #expect(throws: ProvisioningError.self) { try NetworkURI.rbd("rbd:p/i:key=SECRET") }

        var a = AddRequest(image: "nbd://127.0.0.1:10810/vm1")
        a.readOnly = true
        #expect(a.resolvedName == "vm1" && a.absoluteImage == "nbd://127.0.0.1:10810/vm1")
        #expect(a.blockdevs == ["driver=nbd,node-name=disk0,server.type=inet,server.host=127.0.0.1,server.port=10810,export=vm1,read-only=on"])
        let r = AddRequest(image: "rbd:rbd/img@s1:conf=/etc/ceph/ceph.conf")
        #expect(r.resolvedName == "img-s1")
        #expect(r.blockdevs == ["driver=rbd,node-name=disk0,pool=rbd,image=img,snapshot=s1,conf=/etc/ceph/ceph.conf"])
        #expect(AddRequest(image: "nbd+unix:///?socket=/run/nbd/db.sock").resolvedName == "db")
    }
}
