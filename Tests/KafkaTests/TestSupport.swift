import Foundation
import Kafka
import Logging
import ServiceLifecycle
import Synchronization

/// Quiet by default; `KAFKA_TEST_LOG_LEVEL=debug swift test` shows librdkafka's and our logs.
let testLogger: Logger = {
    var logger = Logger(label: "kafka-tests") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = ProcessInfo.processInfo.environment["KAFKA_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
    return logger
}()

struct TimeoutError: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "test step did not finish within \(limit)" }
}

/// Runs `body`, cancelling it and failing after `limit`, so a broken client cannot hang the suite.
func withTimeout<Result: Sendable>(
    _ limit: Duration = .seconds(60),
    _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    try await withThrowingTaskGroup(of: Result.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimeoutError(limit: limit)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Runs `services` in a ServiceGroup around `body`, then shuts them down gracefully (as SIGTERM
/// would) and waits until they finished.
func withServices<Result: Sendable>(
    _ services: [any Service],
    _ body: () async throws -> Result
) async throws -> Result {
    let serviceGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: testLogger))
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await serviceGroup.run() }
        let outcome: Swift.Result<Result, any Error>
        do {
            outcome = .success(try await body())
        } catch {
            outcome = .failure(error)
        }
        await serviceGroup.triggerGracefulShutdown()
        try await group.waitForAll()
        return try outcome.get()
    }
}

/// The result of `body`, error included, so it can be awaited later (e.g. through `async let`).
func outcome<Success: Sendable>(_ body: () async throws -> Success) async -> Result<Success, any Error> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

/// Reads `count` records, or fewer if the sequence ends.
func take(_ count: Int, from consumer: KafkaConsumer) async throws -> [KafkaMessage] {
    var messages: [KafkaMessage] = []
    guard count > 0 else { return messages }
    for try await message in consumer.messages {
        messages.append(message)
        if messages.count == count { break }
    }
    return messages
}

/// Client settings for `cluster`; consumers rejoin quickly after a group member left (see MockKafkaCluster).
/// Reads up to `count` records for at most `limit` and returns what arrived, so a missing record
/// shows up as a failed expectation rather than a timeout.
func take(_ count: Int, from consumer: KafkaConsumer, within limit: Duration) async throws -> [KafkaMessage] {
    let received = Mutex<[KafkaMessage]>([])
    do {
        try await withTimeout(limit) {
            for try await message in consumer.messages {
                let done = received.withLock { messages in
                    messages.append(message)
                    return messages.count >= count
                }
                if done { break }
            }
        }
    } catch is TimeoutError {
        // Fall through with what arrived.
    }
    return received.withLock { $0 }
}

func configuration(_ cluster: MockKafkaCluster, clientId: String) -> KafkaConfiguration {
    KafkaConfiguration(
        bootstrapServers: cluster.bootstrapServers,
        clientId: clientId,
        properties: MockKafkaCluster.fastRejoinConsumerProperties
    )
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }
}
