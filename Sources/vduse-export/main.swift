import Core
import Foundation
import Logging

// Temporary entry point until the option layer lands: serve IMAGE NAME [QUEUES] [ro]
LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = ProcessInfo.processInfo.environment["VDUSE_DEBUG"] != nil ? .debug : .info
    return h
}
let args = CommandLine.arguments
let plan = ExportPlan(id: "e0", deviceName: args[2], backend: BackendSpec(kind: .file(path: args[1])),
                      writable: !(args.count > 4 && args[4] == "ro"), numQueues: UInt16(args.count > 3 ? args[3] : "1")!)
do {
    let code = try ExportServer.run(ServePlan(iothreads: [], exports: [plan]), logger: Logger(label: "vduse-export")) {
        FileHandle.standardOutput.write("\($0.id) \($0.name) \($0.device)\n".data(using: .utf8)!)
    }
    exit(code)
} catch {
    FileHandle.standardError.write("vduse-export: \(error)\n".data(using: .utf8)!)
    exit(1)
}
