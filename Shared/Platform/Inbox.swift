import Contracts
import Foundation
import Kafka
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle

/// Handles one event inside the consumer's transaction. Throwing rolls back the effect and the inbox row together.
public typealias EventHandler = @Sendable (CloudEvent, Transaction) async throws -> Void

/// Handles a run of consecutive events of one type inside the consumer's transaction, in order:
/// for projections that write many rows in one statement instead of one statement per event.
public typealias BatchEventHandler = @Sendable ([CloudEvent], Transaction) async throws -> Void

/// Routes events by CloudEvents `type` to their handlers; unknown types are recorded and skipped.
/// Several handlers may react to one type (a projection and a domain reaction): all of them run,
/// in the order they were registered, in the one inbox transaction — all take effect or none does.
public struct EventHandlers: Sendable {
    enum Entry: Sendable {
        case each(EventHandler)
        case batch(BatchEventHandler)
    }

    var handlers: [String: [Entry]] = [:]

    public init() {}

    /// Adds a handler for events of `type`, after those already registered for it.
    public mutating func on(_ type: String, _ handler: @escaping EventHandler) {
        handlers[type, default: []].append(.each(handler))
    }

    /// Adds a handler that receives the contract's payload, decoded.
    public mutating func on<Payload>(_ contract: EventContract<Payload>,
                                     _ handler: @escaping @Sendable (Payload, CloudEvent, Transaction) async throws -> Void) {
        on(contract.type) { event, transaction in
            try await handler(try event.decode(Payload.self), event, transaction)
        }
    }

    /// Adds a handler that takes consecutive events of the contract's type together (at least one),
    /// in order. A type whose handlers are all batch handlers is applied run by run; if any of its
    /// handlers takes one event at a time, every handler gets one event at a time, so each event
    /// still meets its handlers in registration order.
    public mutating func onBatch<Payload>(_ contract: EventContract<Payload>,
                                          _ handler: @escaping @Sendable ([(payload: Payload, event: CloudEvent)], Transaction) async throws -> Void) {
        handlers[contract.type, default: []].append(.batch { events, transaction in
            try await handler(try events.map { (try $0.decode(Payload.self), $0) }, transaction)
        })
    }

    /// Every handler of `other` after this one's.
    public mutating func merge(_ other: EventHandlers) {
        for (type, list) in other.handlers { handlers[type, default: []].append(contentsOf: list) }
    }

    func entries(for type: String) -> [Entry] { handlers[type] ?? [] }

    /// The event types with at least one handler.
    public var types: Set<String> { Set(handlers.keys) }
}

/// Applies events exactly once: the inbox rows (keyed by event id) and the handlers' effects
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
        try await apply([(event, topic)], logger: logger)[0]
    }

    /// Applies several events in one transaction, in order: all take effect or none does. The
    /// inbox rows go in with one statement; runs of one type go to batch handlers together.
    public func apply(_ events: [(event: CloudEvent, topic: String)], logger: Logger) async throws -> [Outcome] {
        guard !events.isEmpty else { return [] }
        let context = events.count == 1 ? context(for: events[0].event, logger: logger)
                                        : OperationContext(service: service, logger: logger, clock: clock)
        return try await Database.transaction(client, context) { transaction in
            let fresh = try await record(events, in: transaction)
            var outcomes: [Outcome] = []
            var run: [CloudEvent] = []
            func flush() async throws {
                guard let type = run.first?.type else { return }
                try await dispatch(run, entries: handlers.entries(for: type), in: transaction, logger: logger)
                run.removeAll(keepingCapacity: true)
            }
            for (index, (event, _)) in events.enumerated() {
                guard fresh.contains(index) else {
                    outcomes.append(.duplicate)
                    continue
                }
                guard !handlers.entries(for: event.type).isEmpty else {
                    outcomes.append(.ignored)
                    continue
                }
                if let type = run.first?.type, type != event.type { try await flush() }
                run.append(event)
                outcomes.append(.applied)
            }
            try await flush()
            return outcomes
        }
    }

    /// Inserts the inbox rows; the indexes of the events seen for the first time (a repeat within
    /// the batch counts once, at its first place).
    func record(_ events: [(event: CloudEvent, topic: String)], in transaction: Transaction) async throws -> Set<Int> {
        let rows = try await transaction.query("""
            INSERT INTO inbox (event_id, type, source, topic)
            SELECT * FROM unnest(\(events.map(\.event.id)), \(events.map(\.event.type)), \(events.map(\.event.source)), \(events.map(\.topic)))
            ON CONFLICT (event_id) DO NOTHING RETURNING event_id
            """)
        var inserted: Set<String> = []
        for try await id in rows.decode(String.self) { inserted.insert(id) }
        var fresh: Set<Int> = []
        for (index, (event, _)) in events.enumerated() where inserted.remove(event.id) != nil { fresh.insert(index) }
        return fresh
    }

    /// A run of events of one type through its handlers: together when every handler takes
    /// batches, otherwise one event at a time through all of them.
    func dispatch(_ run: [CloudEvent], entries: [EventHandlers.Entry], in transaction: Transaction, logger: Logger) async throws {
        let batchHandlers = entries.compactMap { entry -> BatchEventHandler? in
            if case .batch(let handler) = entry { return handler }
            return nil
        }
        if batchHandlers.count == entries.count {
            let scoped = run.count == 1 ? Transaction(connection: transaction.connection, context: context(for: run[0], logger: logger)) : transaction
            for handler in batchHandlers { try await handler(run, scoped) }
            return
        }
        for event in run {
            let scoped = Transaction(connection: transaction.connection, context: context(for: event, logger: logger))
            for entry in entries {
                switch entry {
                case .each(let handler): try await handler(event, scoped)
                case .batch(let handler): try await handler([event], scoped)
                }
            }
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
                        logger.error("consumer stopped", metadata: ["error": "\(String(reflecting: error))"])
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

    /// Applies the records that were already waiting: each partition's in one transaction of its
    /// own, the partitions side by side (a partition's records stay in order, and an aggregate's
    /// records share a partition). If a partition's transaction fails, each of its records goes
    /// through `handle(_:)` on its own, with retries and dead-lettering, in the same order.
    func handle(_ batch: [KafkaMessage]) async {
        var partitions: [String: [KafkaMessage]] = [:]
        var order: [String] = []
        for message in batch {
            let key = "\(message.topic)/\(message.partition)"
            if partitions[key] == nil { order.append(key) }
            partitions[key, default: []].append(message)
        }
        if order.count == 1 {
            await handlePartition(batch)
            return
        }
        await withTaskGroup(of: Void.self) { group in
            for key in order {
                let messages = partitions[key]!
                group.addTask { await handlePartition(messages) }
            }
        }
    }

    func handlePartition(_ messages: [KafkaMessage]) async {
        if messages.count > 1 {
            var events: [(event: CloudEvent, topic: String)] = []
            for message in messages {
                guard let event = try? CloudEvent(headers: message.headers, value: message.value) else { break }
                events.append((event, message.topic))
            }
            if events.count == messages.count, (try? await inbox.apply(events, logger: logger)) != nil {
                processed.increment(by: messages.count)
                // The highest offset covers the ones before it.
                storeOffset(messages[messages.count - 1], logger: logger)
                return
            }
        }
        for message in messages {
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
                    logger.warning("event handling failed", metadata: ["attempt": "\(attempt)", "error": "\(String(reflecting: error))"])
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
                logger.error("event dead-lettered", metadata: ["dlq.topic": "\(deadLetterTopic)", "error": "\(String(reflecting: error))"])
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
