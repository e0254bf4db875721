import Foundation
import Glibc
import Testing
import TestSupport
@testable import QAPI

/// Building a serve configuration from options against the host's files.
@Suite(.serialized) struct ServeConfigurationTests {
    @Test func forceShareOnlyForReadOnlyNodes() throws {
        #expect(throws: OptionError("force-share=on can only be used with read-only images")) {
            try ServeConfiguration.build(objects: [], blockdevs: ["driver=file,node-name=f0,filename=/etc/hostname,force-share=on"],
                                         exports: [])
        }
        var context = CheckContext()
        context.deviceNameInUse = { _ in false }
        let c = try ServeConfiguration.build(
            objects: [], blockdevs: ["driver=file,node-name=f0,filename=/etc/hostname,read-only=on,force-share=on"],
            exports: ["type=vduse-blk,id=e,node-name=f0,name=fs0"], into: ServeConfiguration(context: context))
        #expect(c.exports.first?.backend.forceShare == true)
    }

    /// Opening a FIFO waited for a writer forever (`check`, `add --read-only`).
    @Test func probingAFIFODoesNotHang() throws {
        let fifo = try TempDir.make() + "/fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        let done = DispatchSemaphore(value: 0)
        Thread { _ = ServeConfiguration.probeOpen(fifo, false); done.signal() }.start()
        let finished = done.wait(timeout: .now() + 5) == .success
        if !finished {  // unblock the stuck open so the process can end
            let w = open(fifo, O_WRONLY | O_NONBLOCK)
            if w >= 0 { close(w) }
        }
        #expect(finished, "opening a FIFO blocked")
        guard finished else { return }  // the check below would block the same way
        #expect(throws: OptionError.self) {
            try ServeConfiguration.build(objects: [], blockdevs: ["driver=file,node-name=f0,filename=\(fifo),read-only=on"], exports: [])
        }
    }
}
