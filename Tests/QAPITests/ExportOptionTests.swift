import Testing
@testable import QAPI

/// QEMU's create-time checks, one table per rule, comparing exact messages; the order of the
/// checks; both syntaxes; the multi-threading interface (QEMU commit 277fc1ce18).
@Suite struct ExportOptionTests {
    /// A server with nodes n0 (writable), ro (read-only), iothreads io0 and io1, and export
    /// id "taken" / VDUSE name "busy" already in use.
    static func configuration() throws -> ServeConfiguration {
        var context = CheckContext()
        context.deviceNameInUse = { $0 == "busy" }
        var c = ServeConfiguration(context: context, openProbe: probe)
        try c.addObject("iothread,id=io0")
        try c.addObject("iothread,id=io1")
        try c.addBlockdev("driver=file,node-name=f0,filename=/img")
        try c.addBlockdev("driver=raw,node-name=n0,file=f0")
        try c.addBlockdev("driver=file,node-name=ro,filename=/img,read-only=on")
        try c.addBlockdev("driver=raw,node-name=overro,file=ro")
        try c.addExport(BlockExportOptions(try KeyvalParser.parse("type=vduse-blk,id=taken,node-name=n0,name=first", impliedKey: "type"), syntax: .keyval))
        return c
    }

    /// A fake host: /missing does not exist, /dev/sdx is a block device, the rest are files.
    static let probe: @Sendable (String, Bool) -> ServeConfiguration.OpenResult = { path, _ in
        switch path {
        case "/missing": .failed("No such file or directory")
        case "/dev/sdx": .device
        default: .regularFile
        }
    }

    /// Checks `spec` (keyval or JSON) against the configuration: nil when valid, else the message.
    static func message(_ spec: String) -> String? {
        do {
            var c = try configuration()
            let (v, s) = try ServeConfiguration.parseSpec(spec, impliedKey: "type")
            try c.addExport(BlockExportOptions(v, syntax: s))
            return nil
        } catch {
            return "\(error)"
        }
    }

    static let base = "type=vduse-blk,id=e0,node-name=n0,name=vd0"

    @Test(arguments: [
        ("3", "queue-size is invalid"), ("2", "queue-size is invalid"), ("0", "queue-size is invalid"),
        ("6", "queue-size is invalid"), ("2048", "queue-size is invalid"), ("1023", "queue-size is invalid"),
        ("4", nil), ("256", nil), ("1024", nil),
        ("65536", "Parameter 'queue-size' expects uint16_t"), ("abc", "Parameter 'queue-size' expects integer"),
        ("-1", "Parameter 'queue-size' expects integer"),
    ] as [(String, String?)])
    func queueSize(value: String, expected: String?) {
        #expect(Self.message(Self.base + ",queue-size=\(value)") == expected)
    }

    @Test(arguments: [
        ("0", "num-queues must be greater than 0"), ("1", nil), ("65535", nil),
        ("65536", "Parameter 'num-queues' expects uint16_t"), ("1.5", "Parameter 'num-queues' expects integer"),
    ] as [(String, String?)])
    func numQueues(value: String, expected: String?) {
        #expect(Self.message(Self.base + ",num-queues=\(value)") == expected)
    }

    static let lbsMessage = "parameter logical-block-size must be a power of 2 between 512 and 2097152"
    @Test(arguments: [
        ("0", nil), ("256", lbsMessage), ("511", lbsMessage), ("512", nil), ("513", lbsMessage), ("4096", nil),
        ("4k", nil), ("2097152", nil), ("2M", nil), ("4194304", lbsMessage), ("3000", lbsMessage),
        ("big", "Parameter 'logical-block-size' expects size"),
    ] as [(String, String?)])
    func logicalBlockSize(value: String, expected: String?) {
        #expect(Self.message(Self.base + ",logical-block-size=\(value)") == expected)
    }

    @Test func logicalBlockSizeZeroMeansDefault() throws {
        var c = try Self.configuration()
        let plan = try c.addExport(BlockExportOptions(try KeyvalParser.parse(Self.base + ",logical-block-size=0", impliedKey: "type"), syntax: .keyval))
        #expect(plan.logicalBlockSize == 512)
    }

    @Test(arguments: [
        ("#invalid", "Invalid block export id"), ("1a", "Invalid block export id"), ("a b", "Invalid block export id"),
        ("a", nil), ("a-b.c_d9", nil), ("taken", "Block export id 'taken' is already in use"),
    ] as [(String, String?)])
    func exportID(id: String, expected: String?) {
        #expect(Self.message("type=vduse-blk,id=\(id),node-name=n0,name=vd0") == expected)
    }

    @Test func emptyIDIsNotWellFormed() {
        #expect(Self.message(#"{"type":"vduse-blk","id":"","node-name":"n0","name":"vd0"}"#) == "Invalid block export id")
    }

    @Test(arguments: [
        ("", "failed to create vduse device: name is empty"),
        (String(repeating: "a", count: 255), nil),
        (String(repeating: "a", count: 256), "failed to create vduse device: name is longer than 255 bytes"),
        ("a..b", "failed to create vduse device: name contains '..'"),
        ("a/b", "failed to create vduse device: name 'a/b' may only contain letters, digits, '.', '_' and '-' (and is not 'control')"),
        ("busy", "failed to create vduse device: name 'busy' is already in use"),
        ("first", "failed to create vduse device: name 'first' is already in use"),
        ("disk-1.a_b", nil),
    ] as [(String, String?)])
    func deviceName(name: String, expected: String?) {
        #expect(Self.message("type=vduse-blk,id=e0,node-name=n0,name=\(name)") == expected)
    }

    @Test func genericChecks() {
        #expect(Self.message("type=nbd,id=e0,node-name=n0") == "No driver found for the requested export type")
        #expect(Self.message("type=iscsi,id=e0,node-name=n0") == "Parameter 'type' does not accept value 'iscsi'")
        #expect(Self.message("type=vduse-blk,id=e0,node-name=nx,name=v") == "Cannot find device='' nor node-name='nx'")
        #expect(Self.message("type=vduse-blk,id=e0,node-name=ro,name=v,writable=on") == "Cannot export read-only node as writable")
        #expect(Self.message("type=vduse-blk,id=e0,node-name=ro,name=v,writable=off") == nil)
        // A writable raw node over a read-only one: QEMU's permission step refuses it later.
        #expect(Self.message("type=vduse-blk,id=e0,node-name=overro,name=v,writable=on") == "Block node is read-only")
        #expect(Self.message("type=vduse-blk,id=e0,node-name=overro,name=v,writable=on,allow-inactive=on")
                == "Export type does not support inactive exports")
        #expect(Self.message("type=vduse-blk,id=e0,node-name=overro,name=v,writable=on,num-queues=0") == "Block node is read-only")
        #expect(Self.message(Self.base + ",iothread=nope") == "iothread \"nope\" not found")
        #expect(Self.message(Self.base + ",iothread=io0") == nil)
        #expect(Self.message(Self.base + ",iothread=io0,fixed-iothread=on") == nil)
        #expect(Self.message(Self.base + ",allow-inactive=on") == "Export type does not support inactive exports")
        #expect(Self.message(Self.base + ",allow-inactive=off") == nil)
    }

    // MARK: multi-threading (QEMU commit 277fc1ce18)

    @Test func multiThreading() {
        let refusal = "vduse-blk export does not support multi-threading"
        #expect(Self.message(Self.base + ",iothread.0=io0") == refusal)                   // one element is still a list
        #expect(Self.message(Self.base + ",iothread.0=io0,iothread.1=io1") == refusal)
        #expect(Self.message(Self.base + ",iothread.0=io0,iothread.1=io1,fixed-iothread=on")
                == "Cannot use fixed-iothread for a multi-threaded export")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"vd0","iothread":[]}"#)
                == "The set of I/O threads must not be empty")
        #expect(Self.message(Self.base + ",iothread.0=io0,iothread.1=nothread,iothread.2=other")
                == "iothread \"nothread\" not found")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"vd0","iothread":["io0","io1"]}"#) == refusal)
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"vd0","iothread":["io0"]}"#) == refusal)
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"vd0","iothread":"io0"}"#) == nil)
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"vd0","iothread":7}"#)
                == "Invalid parameter type for 'iothread', expected: BlockExportIothreads")
    }

    // MARK: order: an input breaking two adjacent rules gets the first one's message

    @Test(arguments: [
        // fixed-iothread+list before id
        ("type=vduse-blk,id=#x,node-name=n0,name=v,iothread.0=io0,fixed-iothread=on", "Cannot use fixed-iothread for a multi-threaded export"),
        // id before duplicate... (a malformed id cannot be taken) id before driver
        ("type=nbd,id=#x,node-name=n0", "Invalid block export id"),
        // duplicate id before driver
        ("type=nbd,id=taken,node-name=n0", "Block export id 'taken' is already in use"),
        // driver before node
        ("type=nbd,id=e0,node-name=nx", "No driver found for the requested export type"),
        // node before writable (and before everything of vduse-blk)
        ("type=vduse-blk,id=e0,node-name=nx,name=v,writable=on,queue-size=3", "Cannot find device='' nor node-name='nx'"),
        // writable before iothread
        ("type=vduse-blk,id=e0,node-name=ro,name=v,writable=on,iothread=nope", "Cannot export read-only node as writable"),
        // iothread before allow-inactive
        ("type=vduse-blk,id=e0,node-name=n0,name=v,iothread=nope,allow-inactive=on", "iothread \"nope\" not found"),
        // empty-list/unknown-in-list before allow-inactive
        ("type=vduse-blk,id=e0,node-name=n0,name=v,iothread.0=nope,allow-inactive=on", "iothread \"nope\" not found"),
        // allow-inactive before num-queues
        ("type=vduse-blk,id=e0,node-name=n0,name=v,allow-inactive=on,num-queues=0", "Export type does not support inactive exports"),
        // num-queues before queue-size
        ("type=vduse-blk,id=e0,node-name=n0,name=v,num-queues=0,queue-size=3", "num-queues must be greater than 0"),
        // queue-size before logical-block-size
        ("type=vduse-blk,id=e0,node-name=n0,name=v,queue-size=3,logical-block-size=3", "queue-size is invalid"),
        // logical-block-size before multi-threading
        ("type=vduse-blk,id=e0,node-name=n0,name=v,logical-block-size=3,iothread.0=io0", lbsMessage),
        // multi-threading before the device name
        ("type=vduse-blk,id=e0,node-name=n0,name=busy,iothread.0=io0", "vduse-blk export does not support multi-threading"),
        // parse errors before every check
        ("type=vduse-blk,id=#x,node-name=n0,name=v,writable=maybe", "Parameter 'writable' expects 'on' or 'off'"),
    ] as [(String, String)])
    func order(spec: String, expected: String) {
        #expect(Self.message(spec) == expected)
    }

    // MARK: parsing

    @Test func parseErrors() {
        #expect(Self.message("type=vduse-blk,id=e0,node-name=n0") == "Parameter 'name' is missing")
        #expect(Self.message("type=vduse-blk,node-name=n0,name=v") == "Parameter 'id' is missing")
        #expect(Self.message("id=e0,node-name=n0,name=v") == "Parameter 'type' is missing")
        #expect(Self.message(Self.base + ",bogus=1") == "Parameter 'bogus' is unexpected")
        #expect(Self.message(Self.base + ",1x=1") == "Invalid parameter '1x'")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"v","bogus":1}"#) == "Parameter 'bogus' is unexpected")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"v","writable":"yes"}"#)
                == "Invalid parameter type for 'writable', expected: boolean")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"v","num-queues":-1}"#)
                == "Parameter 'num-queues' expects uint16_t")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"v","num-queues":"2"}"#)
                == "Parameter 'num-queues' expects uint64")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"v","num-queues":70000}"#)
                == "Parameter 'num-queues' expects uint16_t")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0","node-name":"n0","name":7}"#)
                == "Invalid parameter type for 'name', expected: string")
        #expect(Self.message(#"{"type":"vduse-blk","id":"e0""#)?.hasPrefix("JSON parse error") == true)
    }

    @Test func bothSyntaxesGiveTheSameModel() throws {
        let keyval = try KeyvalParser.parse(
            "vduse-blk,id=e0,node-name=n0,name=vd0,writable=on,writethrough=off,num-queues=4,queue-size=128,logical-block-size=4k,serial=S,,1,iothread.0=io0,iothread.1=io1",
            impliedKey: "type")
        let json = try JSONParser.parse(
            #"{"type":"vduse-blk","id":"e0","node-name":"n0","name":"vd0","writable":true,"writethrough":false,"num-queues":4,"queue-size":128,"logical-block-size":4096,"serial":"S,1","iothread":["io0","io1"]}"#)
        let a = try BlockExportOptions(keyval, syntax: .keyval)
        let b = try BlockExportOptions(json, syntax: .json)
        #expect(a == b)
        #expect(a.iothread == .multi(["io0", "io1"]))
        #expect(a.serial == "S,1")
        #expect(a.logicalBlockSize == 4096)
    }

    @Test func defaultsAreQEMUs() throws {
        var c = try Self.configuration()
        let p = try c.addExport(BlockExportOptions(try KeyvalParser.parse(Self.base, impliedKey: "type"), syntax: .keyval))
        #expect(p == ExportPlan(id: "e0", deviceName: "vd0", nodeName: "n0", backend: BackendSpec(kind: .file(path: "/img")),
                                writable: false, writethrough: false, iothread: nil, numQueues: 1, queueSize: 256,
                                logicalBlockSize: 512, serial: ""))
    }

    @Test func blockNodes() throws {
        func blockdevMessage(_ specs: [String]) -> String? {
            do {
                _ = try ServeConfiguration.build(objects: [], blockdevs: specs, exports: [],
                                                 into: ServeConfiguration(openProbe: ExportOptionTests.probe))
                return nil
            } catch { return "\(error)" }
        }
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/missing"]) == "Could not open '/missing': No such file or directory")
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a", "driver=file,node-name=f0,filename=/b"])
                == "Duplicate nodes with node-name='f0'")
        #expect(blockdevMessage(["driver=vmdk,node-name=n0,file=f"])?.hasPrefix("Block driver 'vmdk' is not supported") == true)
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a,cache.direct=on,aio=io_uring"]) == nil)
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a,aio=fast"]) == "Parameter 'aio' does not accept value 'fast'")
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a,cache.bogus=on"]) == "Parameter 'cache.bogus' is unexpected")
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a,discard=unmap"]) == "Parameter 'discard' is unexpected")
        #expect(blockdevMessage(["driver=null-co,node-name=z,size=1073741824"]) == nil)
        #expect(blockdevMessage(["driver=null-co,node-name=z,size=1G"]) == "Parameter 'size' expects integer")
        #expect(blockdevMessage(["driver=file,filename=/a"]) == "'node-name' must be specified for the root node")
        #expect(blockdevMessage(["driver=file,node-name=\(String(repeating: "n", count: 32)),filename=/a"]) == "Node name too long")
        #expect(blockdevMessage(["driver=file,node-name=\(String(repeating: "n", count: 31)),filename=/a"]) == nil)
        #expect(blockdevMessage(["driver=file,node-name=9f,filename=/a"]) == "Invalid node-name: '9f'")
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/dev/sdx"]) == "'file' driver requires '/dev/sdx' to be a regular file")
        #expect(blockdevMessage(["driver=host_device,node-name=f0,filename=/a"]) == "'host_device' driver requires '/a' to be either a character or block device")
        #expect(blockdevMessage(["driver=host_device,node-name=f0,filename=/dev/sdx"]) == nil)
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a,aio=native"])
                == "aio=native was specified, but it requires cache.direct=on, which was not specified.")
        #expect(blockdevMessage(["driver=file,node-name=f0,filename=/a,aio=native,cache.direct=on"]) == nil)
        #expect(blockdevMessage(["driver=raw,node-name=n0,file=nothere"]) == "Cannot find device='nothere' nor node-name='nothere'")
        var c = ServeConfiguration(openProbe: ExportOptionTests.probe)
        try c.addBlockdev("driver=file,node-name=f0,filename=/a,read-only=on,cache.direct=on")
        try c.addBlockdev("driver=raw,node-name=n0,file=f0")
        #expect(c.context.nodes["n0"] == BackendSpec(kind: .file(path: "/a"), readOnly: true, direct: true))
    }

    @Test func objects() {
        func objectMessage(_ specs: [String]) -> String? {
            do { _ = try ServeConfiguration.build(objects: specs, blockdevs: [], exports: []); return nil } catch { return "\(error)" }
        }
        #expect(objectMessage(["iothread,id=io0"]) == nil)
        #expect(objectMessage([#"{"qom-type":"iothread","id":"io0"}"#]) == nil)
        #expect(objectMessage(["iothread,id=io0", "iothread,id=io0"]) == "attempt to add duplicate property 'io0' to object (type 'container')")
        #expect(objectMessage(["memory-backend-ram,id=m0"]) == "Parameter 'qom-type' does not accept value 'memory-backend-ram'")
        #expect(objectMessage(["iothread,id=9x"]) == "Parameter 'id' expects an identifier")
    }

    @Test func keyvalSyntax() throws {
        #expect(try KeyvalParser.parse("a=1,b=x,,y", impliedKey: nil) == .object([("a", .string("1")), ("b", .string("x,y"))]))
        #expect(try KeyvalParser.parse("vduse-blk,id=e", impliedKey: "type") == .object([("type", .string("vduse-blk")), ("id", .string("e"))]))
        #expect(try KeyvalParser.parse("cache.direct=on", impliedKey: nil) == .object([("cache", .object([("direct", .string("on"))]))]))
        #expect(try KeyvalParser.parse("a=1,a=2", impliedKey: nil) == .object([("a", .string("2"))]))
        #expect(OptionReader.parseUnsigned("010") == 8 && OptionReader.parseUnsigned("0x10") == 16 && OptionReader.parseUnsigned("10") == 10)
        #expect(throws: OptionError.self) { try KeyvalParser.parse("x=1,novalue", impliedKey: "type") }
        #expect(throws: OptionError.self) { try KeyvalParser.parse("iothread=a,iothread.0=b", impliedKey: nil) }
        #expect(throws: OptionError.self) { try KeyvalParser.parse("iothread.1=b", impliedKey: nil) }
    }
}
