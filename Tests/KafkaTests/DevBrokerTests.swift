import Foundation
import Kafka
import Testing

/// The `devbroker` executable SwiftPM built next to this test bundle, if any.
private let devbrokerPath: String? = {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [directory, directory.deletingLastPathComponent()].map { $0.appendingPathComponent("devbroker").path }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

@Suite("devbroker executable")
struct DevBrokerTests {
    @Test(
        "serves clients of another process and cleans up on SIGTERM",
        .enabled(if: devbrokerPath != nil, "devbroker is built by `swift build` next to the tests")
    )
    func servesOtherProcesses() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("devbroker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let addressFile = directory.appendingPathComponent("address").path

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(devbrokerPath))
        process.arguments = ["--address-file", addressFile, "--topics", "devbroker.test.v1,other.v1", "--partitions", "2"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        try await withTimeout {
            let address = try await waitForFile(addressFile)
            #expect(address.wholeMatch(of: /127\.0\.0\.1:\d+/) != nil)

            let kafka = KafkaConfiguration(
                bootstrapServers: address,
                clientId: "devbroker-test",
                properties: MockKafkaCluster.fastRejoinConsumerProperties
            )
            let producer = try KafkaProducer(configuration: kafka, logger: testLogger)
            let consumer = try KafkaConsumer(
                configuration: kafka, groupId: "devbroker-test", topics: ["devbroker.test.v1"], logger: testLogger
            )
            try await withServices([producer, consumer]) {
                var partitions = Set<Int32>()
                for index in 0..<10 {
                    let ack = try await producer.send(topic: "devbroker.test.v1", key: "key-\(index)".bytes, value: "v\(index)".bytes)
                    partitions.insert(ack.partition)
                }
                // The topic was pre-created with --partitions 2 (auto-created topics would get more).
                #expect(partitions == [0, 1])
                let received = try await take(10, from: consumer)
                #expect(Set(received.map(\.value.text)) == Set((0..<10).map { "v\($0)" }))
            }
        }

        process.terminate()  // SIGTERM
        try await withTimeout(.seconds(10)) {
            while process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: addressFile))
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printed.hasPrefix("broker: 127.0.0.1:"))
    }

    @Test("rejects a missing --address-file", .enabled(if: devbrokerPath != nil))
    func usageError() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(devbrokerPath))
        process.arguments = ["--topics", "a"]
        process.standardError = Pipe()
        try process.run()
        try await withTimeout(.seconds(10)) {
            while process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(process.terminationStatus == 64)
    }
}

/// Polls until `path` exists, then returns its contents.
private func waitForFile(_ path: String) async throws -> String {
    while true {
        if let contents = try? String(contentsOfFile: path, encoding: .utf8) {
            return contents
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}
