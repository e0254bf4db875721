import QAPI
import Testing

/// `--blockdev driver=qcow2,…`: what the option layer resolves and what it refuses.
@Suite struct Qcow2OptionTests {
    func nodes(_ specs: [String]) throws(OptionError) -> ServeConfiguration {
        var c = ServeConfiguration(openProbe: ExportOptionTests.probe)
        for s in specs { try c.addBlockdev(s) }
        return c
    }

    func message(_ specs: [String]) -> String? {
        do { _ = try nodes(specs); return nil } catch { return "\(error)" }
    }

    @Test func resolved() throws {
        let c = try nodes(["driver=file,node-name=f0,filename=/a.qcow2,read-only=on",
                           "driver=qcow2,node-name=q0,file=f0,l2-cache-size=8M,discard=unmap"])
        #expect(c.context.nodes["q0"] == BackendSpec(
            kind: .qcow2(Qcow2Spec(path: "/a.qcow2", backing: .fromImage, l2CacheSize: 8 << 20, discardUnmap: true)),
            readOnly: true))
        let b = try nodes(["driver=file,node-name=base,filename=/base.raw",
                           "driver=file,node-name=f1,filename=/b.qcow2",
                           "driver=qcow2,node-name=mid,file=f1",
                           "driver=file,node-name=f0,filename=/a.qcow2",
                           "driver=qcow2,node-name=q0,file=f0,backing=mid",
                           "driver=qcow2,node-name=q1,file=f0,backing=base",
                           "driver=qcow2,node-name=q2,file=f0,backing="])
        #expect(b.context.nodes["q0"]?.kind == .qcow2(Qcow2Spec(path: "/a.qcow2", backing: .image(path: "/b.qcow2", qcow2: true))))
        #expect(b.context.nodes["q1"]?.kind == .qcow2(Qcow2Spec(path: "/a.qcow2", backing: .image(path: "/base.raw", qcow2: false))))
        #expect(b.context.nodes["q2"]?.kind == .qcow2(Qcow2Spec(path: "/a.qcow2", backing: .none)))
    }

    @Test func refused() {
        let f = "driver=file,node-name=f0,filename=/a.qcow2"
        #expect(message(["driver=qcow2,node-name=q0"]) == "Parameter 'file' is missing")
        #expect(message(["driver=qcow2,node-name=q0,file=nope"]) == "Cannot find device='nope' nor node-name='nope'")
        #expect(message([f, "driver=qcow2,node-name=q0,file=f0,backing=nope"]) == "Cannot find device='nope' nor node-name='nope'")
        #expect(message([f, "driver=qcow2,node-name=q0,file=f0,discard=sometimes"]) == "Parameter 'discard' does not accept value 'sometimes'")
        #expect(message([f, "driver=qcow2,node-name=q0,file=f0,lazy-refcounts=on"]) == "Parameter 'lazy-refcounts' is unexpected")
        #expect(message([f, "driver=qcow2,node-name=q0,file=f0,cache.direct=on"]) == "qcow2 node 'q0': cache.direct=on is not supported with qcow2")
        #expect(message(["driver=null-co,node-name=z", "driver=qcow2,node-name=q0,file=z"])
                == "qcow2 node 'q0': 'file' must name a file node holding the image")
    }
}
