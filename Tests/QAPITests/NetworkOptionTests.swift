import QAPI
import Testing

/// `--blockdev driver=nbd|rbd,…`: what the nodes resolve to and what they refuse.
@Suite struct NetworkOptionTests {
    func node(_ spec: String) throws(OptionError) -> BackendSpec? {
        var c = ServeConfiguration(openProbe: ExportOptionTests.probe)
        try c.addBlockdev(spec)
        return c.context.nodes["n0"]
    }

    func message(_ spec: String) -> String? {
        do { _ = try node(spec); return nil } catch { return "\(error)" }
    }

    @Test func nbdNodes() throws {
        #expect(try node("driver=nbd,node-name=n0,server.type=inet,server.host=127.0.0.1,server.port=10809,export=disk,reconnect-delay=5")
            == BackendSpec(kind: .nbd(NBDSpec(server: .inet(host: "127.0.0.1", port: "10809"), export: "disk", reconnectDelay: 5))))
        #expect(try node("driver=nbd,node-name=n0,server.type=unix,server.path=/s,x-request-timeout=0")
            == BackendSpec(kind: .nbd(NBDSpec(server: .unix(path: "/s"), requestTimeout: 0))))
        #expect(message("driver=nbd,node-name=n0,server.type=unix,server.path=/s,x-request-timeout=-1")?.contains("x-request-timeout") == true)
        let u = try node("driver=nbd,node-name=n0,server.type=unix,server.path=/run/n.sock,read-only=on")
        #expect(u == BackendSpec(kind: .nbd(NBDSpec(server: .unix(path: "/run/n.sock"))), readOnly: true))
        #expect(u?.pathDescription == "nbd+unix:///?socket=/run/n.sock")
        #expect(message("driver=nbd,node-name=n0") == "NBD server address missing")
        #expect(message("driver=nbd,node-name=n0,server.type=inet,server.host=h") == "Parameter 'server.port' is missing")
        #expect(message("driver=nbd,node-name=n0,server.type=fd,server.str=3") == "Parameter 'server.type' does not accept value 'fd'")
        #expect(message("driver=nbd,node-name=n0,server.type=unix,server.path=/s,tls-creds=t") == "Parameter 'tls-creds' is unexpected")
    }

    @Test func rbdNodes() throws {
        #expect(try node("driver=rbd,node-name=n0,pool=p,namespace=ns,image=i,conf=/c.conf,user=u")
            == BackendSpec(kind: .rbd(RBDSpec(pool: "p", namespace: "ns", image: "i", conf: "/c.conf", user: "u"))))
        #expect(message("driver=rbd,node-name=n0,pool=p,image=i,snapshot=s") == "rbd snapshots are always read-only")
        #expect(try node("driver=rbd,node-name=n0,pool=p,image=i,snapshot=s,read-only=on")?.pathDescription == "rbd:p/i@s")
        #expect(message("driver=rbd,node-name=n0,image=i") == "Parameter 'pool' is missing")
        #expect(message("driver=rbd,node-name=n0,pool=p,image=i,key-secret=k") == "Parameter 'key-secret' is unexpected")
    }
}
