import Testing
@testable import QAPI
@testable import Server

/// The members every block job command takes, as QEMU reads them.
@Suite struct QMPJobOptionTests {
    func options(_ json: String) throws -> (id: String?, autoDismiss: Bool, speed: UInt64) {
        var r = try OptionReader(try JSONParser.parse(json), syntax: .json)
        let o = try QMPCommands.jobOptions(&r)
        return (o.id, o.autoDismiss, o.speed)
    }

    func message(_ json: String) -> String? {
        do { _ = try options(json); return nil } catch { return (error as? QMPServer.CommandError)?.desc ?? "\(error)" }
    }

    @Test func speedIsBytesPerSecondAndZeroIsNoLimit() throws {
        #expect(try options(#"{"job-id": "j", "speed": 1048576}"#) == ("j", true, 1 << 20))
        #expect(try options(#"{"auto-dismiss": false}"#) == (nil, false, 0))
        #expect(try options(#"{"speed": 0}"#).speed == 0)
        #expect(message(#"{"speed": -1}"#) == "Invalid parameter 'speed'")
        #expect(message(#"{"speed": 2.5}"#) == "Invalid parameter type for 'speed', expected: integer")
        #expect(message(#"{"auto-finalize": false}"#) == "auto-finalize=false is not supported: jobs finalize on their own")
    }

    @Test func setSpeedNeedsTheSpeed() {
        var r = try! OptionReader(try! JSONParser.parse(#"{"device": "j"}"#), syntax: .json)
        #expect { _ = try QMPCommands.speed(&r, required: true) } throws: {
            ($0 as? QMPServer.CommandError)?.desc == "Parameter 'speed' is missing"
        }
    }
}
