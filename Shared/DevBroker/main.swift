// devbroker: a throwaway Kafka broker for local development and tests.
//
//   devbroker --address-file PATH [--topics t1,t2,...] [--partitions N]
//
// Hosts librdkafka's in-memory mock cluster on loopback, pre-creates the topics (by default every
// topic of the suite, from Shared/Contracts), writes the
// bootstrap address to PATH (atomically, once ready), prints `broker: <address>`, and runs
// until SIGTERM/SIGINT, when it stops the cluster, removes PATH and exits 0.
//
// SIGUSR1 takes the broker down (connections dropped, new ones refused) and SIGUSR2 brings it
// back, with every record and committed offset kept: a broker outage as clients see a real
// broker's restart, for fault-injection tests (the mock's data lives only in this process).

import Dispatch
import Contracts
import Foundation
import Kafka
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Options {
    var addressFile: String
    var topics: [String] = []
    var partitions: Int32 = 3

    static let usage = "usage: devbroker --address-file PATH [--topics t1,t2,...] [--partitions N]"

    struct UsageError: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ arguments: [String]) throws -> Options {
        var addressFile: String?
        var topics: [String] = Topics.all
        var partitions: Int32 = 3
        var remaining = arguments[...]
        while let flag = remaining.popFirst() {
            guard flag != "--help", flag != "-h" else { throw UsageError(description: usage) }
            guard let value = remaining.popFirst() else {
                throw UsageError(description: "missing value for \(flag)")
            }
            switch flag {
            case "--address-file":
                addressFile = value
            case "--topics":
                topics = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            case "--partitions":
                guard let count = Int32(value), count > 0 else {
                    throw UsageError(description: "--partitions must be a positive integer")
                }
                partitions = count
            default:
                throw UsageError(description: "unknown option \(flag)")
            }
        }
        guard let addressFile, !addressFile.isEmpty else {
            throw UsageError(description: "--address-file is required")
        }
        return Options(addressFile: addressFile, topics: topics, partitions: partitions)
    }
}

/// Writes `contents` to a temporary file next to `path`, then renames it over `path`, so
/// readers never see a partial address.
func writeAtomically(_ contents: String, to path: String) throws {
    let temporary = "\(path).tmp-\(getpid())"
    try Data(contents.utf8).write(to: URL(fileURLWithPath: temporary))
    guard rename(temporary, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw Options.UsageError(description: "cannot rename \(temporary) to \(path): \(reason)")
    }
}

func fail(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data("devbroker: \(message)\n".utf8))
    exit(status)
}

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail("\(error)\n\(Options.usage)", status: 64)  // EX_USAGE
}

var logger = Logger(label: "devbroker")
logger.logLevel = .info

let cluster: MockKafkaCluster
do {
    cluster = try MockKafkaCluster(brokers: 1, logger: logger)
    for topic in options.topics {
        try cluster.createTopic(topic, partitions: options.partitions)
    }
    try writeAtomically(cluster.bootstrapServers, to: options.addressFile)
} catch {
    fail("cannot start: \(error)", status: 1)
}

// Unbuffered write(2): the line is visible to a parent reading our stdout right away.
FileHandle.standardOutput.write(Data("broker: \(cluster.bootstrapServers)\n".utf8))

// Handle the signals on the main queue instead of the default action (immediate termination).
let addressFile = options.addressFile
let signalSources = [SIGTERM, SIGINT].map { signalNumber in
    #if canImport(Darwin)
    // Darwin's signal sources (kqueue) only see signals whose default action is disabled; on
    // Linux, libdispatch takes the signal over itself and SIG_IGN would discard it.
    signal(signalNumber, SIG_IGN)
    #endif
    let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
    source.setEventHandler {
        cluster.shutdown()
        unlink(addressFile)
        exit(0)
    }
    source.resume()
    return source
}

let outageSources = [(SIGUSR1, true), (SIGUSR2, false)].map { signalNumber, down in
    #if canImport(Darwin)
    signal(signalNumber, SIG_IGN)
    #endif
    let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
    source.setEventHandler {
        do {
            try cluster.setBrokersDown(down)
            logger.warning(down ? "broker down (SIGUSR1): connections refused until SIGUSR2" : "broker up again (SIGUSR2)")
        } catch {
            logger.error("could not change the broker's state: \(error)")
        }
    }
    source.resume()
    return source
}

withExtendedLifetime((signalSources, outageSources)) {
    dispatchMain()
}
