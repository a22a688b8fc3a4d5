import Contracts
import Foundation
import Kafka
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle

/// Handles one event inside the consumer's transaction. Throwing rolls back the effect and the inbox row together.
public typealias EventHandler = @Sendable (CloudEvent, Transaction) async throws -> Void

/// Routes events by CloudEvents `type` to their handlers; unknown types are recorded and skipped.
/// Several handlers may react to one type (a projection and a domain reaction): all of them run,
/// in the order they were registered, in the one inbox transaction — all take effect or none does.
public struct EventHandlers: Sendable {
    var handlers: [String: [EventHandler]] = [:]

    public init() {}

    /// Adds a handler for events of `type`, after those already registered for it.
    public mutating func on(_ type: String, _ handler: @escaping EventHandler) {
        handlers[type, default: []].append(handler)
    }

    /// Adds a handler that receives the contract's payload, decoded.
    public mutating func on<Payload>(_ contract: EventContract<Payload>,
                                     _ handler: @escaping @Sendable (Payload, CloudEvent, Transaction) async throws -> Void) {
        on(contract.type) { event, transaction in
            try await handler(try event.decode(Payload.self), event, transaction)
        }
    }

    /// Every handler of `other` after this one's.
    public mutating func merge(_ other: EventHandlers) {
        for (type, list) in other.handlers { handlers[type, default: []].append(contentsOf: list) }
    }

    func handlers(for type: String) -> [EventHandler] { handlers[type] ?? [] }

    /// The event types with at least one handler.
    public var types: Set<String> { Set(handlers.keys) }
}

/// Applies an event exactly once: the inbox row (keyed by event id) and the handler's effect
/// commit in one transaction, so a redelivered event finds its id and does nothing.
public struct Inbox: Sendable {
    let client: PostgresClient
    let handlers: EventHandlers
    let service: String
    let clock: BusinessClock

    public init(client: PostgresClient, handlers: EventHandlers, service: String, clock: BusinessClock) {
        self.client = client
        self.handlers = handlers
        self.service = service
        self.clock = clock
    }

    public enum Outcome: Equatable, Sendable {
        case applied
        case duplicate
        case ignored
    }

    public func apply(_ event: CloudEvent, topic: String, logger: Logger) async throws -> Outcome {
        try await Database.transaction(client, context(for: event, logger: logger)) { transaction in
            try await apply(event, topic: topic, in: transaction)
        }
    }

    /// Applies several events in one transaction, in order: all take effect or none does.
    public func apply(_ events: [(event: CloudEvent, topic: String)], logger: Logger) async throws -> [Outcome] {
        try await Database.transaction(client, OperationContext(service: service, logger: logger, clock: clock)) { transaction in
            var outcomes: [Outcome] = []
            for (event, topic) in events {
                let scoped = Transaction(connection: transaction.connection, context: context(for: event, logger: logger))
                outcomes.append(try await apply(event, topic: topic, in: scoped))
            }
            return outcomes
        }
    }

    /// The event's operation: its trace continued, its id and type on every log line.
    func context(for event: CloudEvent, logger: Logger) -> OperationContext {
        var logger = logger
        logger[metadataKey: "event.id"] = .string(event.id)
        logger[metadataKey: "event.type"] = .string(event.type)
        let trace = event.traceparent.flatMap(TraceParent.init)?.child() ?? .make()
        logger[metadataKey: "trace.id"] = .string(trace.traceId)
        return OperationContext(service: service, trace: trace, logger: logger, clock: clock)
    }

    func apply(_ event: CloudEvent, topic: String, in transaction: Transaction) async throws -> Outcome {
        let inserted = try await transaction.query("""
            INSERT INTO inbox (event_id, type, source, topic) VALUES (\(event.id), \(event.type), \(event.source), \(topic))
            ON CONFLICT (event_id) DO NOTHING RETURNING 1
            """)
        var isNew = false
        for try await _ in inserted.decode(Int.self) { isNew = true }
        guard isNew else { return .duplicate }
        let handlers = handlers.handlers(for: event.type)
        guard !handlers.isEmpty else { return .ignored }
        for handler in handlers { try await handler(event, transaction) }
        return .applied
    }
}

/// Consumes topics in a consumer group and feeds each message through the inbox. A message that
/// keeps failing is retried with exponential backoff, then parked on the service's dead-letter topic
/// with the error and its original coordinates in headers. The offset is stored only afterwards.
public struct EventConsumerService: Service {
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let inbox: Inbox
    let deadLetterTopic: String
    let maxAttempts: Int
    let backoff: Duration
    let logger: Logger
    let processed: Counter
    let failed: Counter
    let deadLettered: Counter
    let service: String
    let batchSize: Int

    public init(consumer: KafkaConsumer, producer: KafkaProducer, inbox: Inbox, service: String,
                maxAttempts: Int, backoff: Duration, batchSize: Int = 100, logger: Logger) {
        self.consumer = consumer
        self.producer = producer
        self.inbox = inbox
        self.service = service
        self.deadLetterTopic = DeadLetters.topic(for: service)
        self.maxAttempts = maxAttempts
        self.backoff = backoff
        self.batchSize = max(1, batchSize)
        self.logger = logger
        self.processed = Counter(label: "consumer_messages_processed_total", dimensions: [("service", service)])
        self.failed = Counter(label: "consumer_message_failures_total", dimensions: [("service", service)])
        self.deadLettered = Counter(label: "consumer_messages_dead_lettered_total", dimensions: [("service", service)])
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await consumer.run() }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    do {
                        while !Task.isCancelled {
                            let batch = try await consumer.nextBatch(maximum: batchSize)
                            if batch.isEmpty { break }
                            await handle(batch)
                        }
                    } catch is CancellationError {
                    } catch {
                        logger.error("consumer stopped", metadata: ["error": "\(error)"])
                    }
                }
            }
            group.addTask { await reportLag() }
            _ = try await group.next()
            group.cancelAll()
        }
    }

    func reportLag() async {
        while !Task.isCancelled {
            for (partition, lag) in consumer.lag() {
                Gauge(label: "consumer_lag", dimensions: [("service", service), ("partition", "\(partition)")]).record(lag)
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }

    /// Applies the records that were already waiting in one transaction; if any of them fails, each
    /// goes through `handle(_:)` on its own, with retries and dead-lettering, in the same order.
    func handle(_ batch: [KafkaMessage]) async {
        if batch.count > 1 {
            var events: [(event: CloudEvent, topic: String)] = []
            for message in batch {
                guard let event = try? CloudEvent(headers: message.headers, value: message.value) else { break }
                events.append((event, message.topic))
            }
            if events.count == batch.count, (try? await inbox.apply(events, logger: logger)) != nil {
                processed.increment(by: batch.count)
                // The highest offset of each partition covers the ones before it.
                var last: [String: KafkaMessage] = [:]
                for message in batch { last["\(message.topic)/\(message.partition)"] = message }
                for message in last.values { storeOffset(message, logger: logger) }
                return
            }
        }
        for message in batch {
            if Task.isCancelled { return }
            await handle(message)
        }
    }

    /// Processes one message to completion: applied, duplicate, ignored or dead-lettered. Never throws,
    /// so one bad message cannot stop the partition behind it forever.
    func handle(_ message: KafkaMessage) async {
        var logger = self.logger
        logger[metadataKey: "kafka.topic"] = .string(message.topic)
        logger[metadataKey: "kafka.partition"] = .stringConvertible(message.partition)
        logger[metadataKey: "kafka.offset"] = .stringConvertible(message.offset)
        var lastError: (any Error)?
        do {
            let event = try CloudEvent(headers: message.headers, value: message.value)
            logger[metadataKey: "event.id"] = .string(event.id)
            logger[metadataKey: "event.type"] = .string(event.type)
            if let traceparent = event.traceparent, let trace = TraceParent(traceparent) {
                logger[metadataKey: "trace.id"] = .string(trace.traceId)
            }
            for attempt in 1...maxAttempts {
                do {
                    let outcome = try await inbox.apply(event, topic: message.topic, logger: logger)
                    logger.debug("event consumed", metadata: ["outcome": "\(outcome)"])
                    processed.increment()
                    lastError = nil
                    break
                } catch {
                    lastError = error
                    failed.increment()
                    logger.warning("event handling failed", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                    if attempt < maxAttempts {
                        let delay = backoff * (1 << min(attempt - 1, 10))
                        try await Task.sleep(for: delay)
                    }
                }
            }
        } catch let error as CloudEvent.DecodingFailure {
            // Not a CloudEvent at all: retrying cannot help.
            lastError = error
        } catch {
            // Cancelled while backing off: leave the offset unstored so the message is read again.
            return
        }
        if let lastError {
            await deadLetter(message, error: lastError, logger: logger)
        }
        storeOffset(message, logger: logger)
    }

    func deadLetter(_ message: KafkaMessage, error: any Error, logger: Logger) async {
        var headers = message.headers.filter { !$0.key.hasPrefix(DeadLetters.headerPrefix) }
        headers.append(contentsOf: DeadLetters.headers(for: message, error: error, attempts: maxAttempts, group: service))
        // The offset may not move past the message until the dead-letter copy is safely stored.
        while !Task.isCancelled {
            do {
                _ = try await producer.send(topic: deadLetterTopic, key: message.key, value: message.value, headers: headers)
                deadLettered.increment()
                logger.error("event dead-lettered", metadata: ["dlq.topic": "\(deadLetterTopic)", "error": "\(error)"])
                return
            } catch {
                logger.error("dead-letter publish failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func storeOffset(_ message: KafkaMessage, logger: Logger) {
        do {
            try consumer.storeOffset(message)
        } catch {
            // Losing a store only means a redelivery, which the inbox absorbs.
            logger.warning("offset store failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Conventions of the dead-letter topics: one per consuming service, the failure in `dlq_*` headers.
public enum DeadLetters {
    public static let headerPrefix = "dlq_"

    public static func topic(for service: String) -> String { "\(service).dlq.v1" }

    static func headers(for message: KafkaMessage, error: any Error, attempts: Int, group: String) -> [KafkaHeader] {
        let reason = String(String(describing: error).prefix(1000))
        return [
            KafkaHeader(key: "dlq_original_topic", value: Array(message.topic.utf8)),
            KafkaHeader(key: "dlq_original_partition", value: Array("\(message.partition)".utf8)),
            KafkaHeader(key: "dlq_original_offset", value: Array("\(message.offset)".utf8)),
            KafkaHeader(key: "dlq_consumer_group", value: Array(group.utf8)),
            KafkaHeader(key: "dlq_attempts", value: Array("\(attempts)".utf8)),
            KafkaHeader(key: "dlq_error", value: Array(reason.utf8)),
            KafkaHeader(key: "dlq_failed_at", value: Array(EventCoding.formatTime(Date()).utf8)),
        ]
    }

    /// The original topic a dead-lettered message came from.
    public static func originalTopic(of message: KafkaMessage) -> String? {
        message.headers.first { $0.key == "dlq_original_topic" }?.value.map { String(decoding: $0, as: UTF8.self) }
    }
}
