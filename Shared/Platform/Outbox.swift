import Contracts
import Foundation
import Kafka
import Logging
import Metrics
import PostgresNIO
import ServiceLifecycle

/// Writes events into the service's `outbox` table inside the caller's transaction, so the
/// event exists exactly when the state change it describes does.
public enum Outbox {
    /// Emits `payload` as the contract's event: on its topic, keyed and subject-named by its
    /// aggregate, from this service, at business time, continuing the operation's trace.
    public static func emit<Payload>(_ contract: EventContract<Payload>, _ payload: Payload, in transaction: Transaction) async throws {
        let event = try CloudEvent.json(type: contract.type, source: transaction.context.eventSource, subject: contract.subject(for: payload),
                                        payload: payload, traceparent: transaction.context.traceparent, time: transaction.now)
        try await enqueue(event, topic: contract.topic, key: contract.key(for: payload), on: transaction.connection, logger: transaction.logger)
    }

    /// Writes a ready-made event (relays and tests); services emit through `emit(_:_:in:)`.
    public static func enqueue(_ event: CloudEvent, topic: String, key: String, on connection: PostgresConnection, logger: Logger) async throws {
        // The outbox keys events by UUID; every CloudEvent this suite creates has one.
        guard let eventId = UUID(uuidString: event.id) else { throw OutboxError.eventIdNotAUUID(event.id) }
        // The NOTIFY wakes the relay at commit (the poll interval covers a missed one); it goes in
        // the same statement as the row, one round trip per event rather than two.
        try await connection.checkedQuery("""
            WITH event AS (
                INSERT INTO outbox (event_id, topic, key, type, source, subject, time, traceparent, data)
                VALUES (\(eventId), \(topic), \(key), \(event.type), \(event.source), \(event.subject), \(event.time), \(event.traceparent), \(ByteBuffer(bytes: event.data)))
                RETURNING seq
            )
            SELECT pg_notify('outbox_' || current_schema(), '') FROM event
            """, logger: logger)
    }
}

public enum OutboxError: Error, Equatable {
    case eventIdNotAUUID(String)
}

/// Something that can publish one record and report when the broker has acknowledged it.
public protocol EventPublisher: Sendable {
    func publish(topic: String, key: [UInt8], value: [UInt8], headers: [KafkaHeader]) async throws
}

extension KafkaProducer: EventPublisher {
    public func publish(topic: String, key: [UInt8], value: [UInt8], headers: [KafkaHeader]) async throws {
        _ = try await send(topic: topic, key: key, value: value, headers: headers)
    }
}

/// Publishes outbox rows to Kafka in `seq` order and marks each sent only after the broker acknowledged it.
/// One relay per service is active (session advisory lock); others stand by. It wakes on NOTIFY and
/// polls as a fallback, so a lost notification delays an event but never loses it.
public struct OutboxRelay: Service {
    let client: PostgresClient
    let publisher: any EventPublisher
    let schema: String
    let pollInterval: Duration
    let batchSize: Int
    let logger: Logger
    let backlogGauge: Gauge
    let ageGauge: Gauge
    let publishedCounter: Counter
    let failedCounter: Counter

    public init(client: PostgresClient, publisher: any EventPublisher, schema: String, pollInterval: Duration = .seconds(1), batchSize: Int = 200, logger: Logger) {
        self.client = client
        self.publisher = publisher
        self.schema = schema
        self.pollInterval = pollInterval
        self.batchSize = batchSize
        self.logger = logger
        self.backlogGauge = Gauge(label: "outbox_backlog", dimensions: [("service", schema)])
        self.ageGauge = Gauge(label: "outbox_oldest_age_seconds", dimensions: [("service", schema)])
        self.publishedCounter = Counter(label: "outbox_published_total", dimensions: [("service", schema)])
        self.failedCounter = Counter(label: "outbox_publish_failures_total", dimensions: [("service", schema)])
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await runWhileLeader()
                } catch is CancellationError {
                    return
                } catch {
                    if Task.isCancelled { return }
                    logger.warning("outbox relay interrupted", metadata: ["error": "\(String(reflecting: error))"])
                }
                try? await Task.sleep(for: pollInterval)
            }
        }
    }

    /// Holds the advisory lock on a dedicated connection and drains the outbox until cancelled.
    func runWhileLeader() async throws {
        let lockKey = Database.advisoryLockKey("\(schema).outbox_relay")
        try await client.withConnection { connection in
            try Database.checkOpen(connection)
            var leader = false
            while !leader {
                let rows = try await connection.checkedQuery("SELECT pg_try_advisory_lock(\(lockKey))", logger: logger)
                for try await acquired in rows.decode(Bool.self) { leader = acquired }
                if !leader {
                    try await Task.sleep(for: pollInterval)
                }
            }
            logger.info("outbox relay active", metadata: ["db.schema": "\(schema)"])
            do {
                try await drainWhileListening(connection)
            } catch {
                await release(lockKey, on: connection)
                throw error
            }
            await release(lockKey, on: connection)
        }
    }

    /// Gives up leadership. The lock is per session and the connection goes back to the pool, so it
    /// must be released explicitly; if that fails the connection is closed, which releases it too.
    /// A connection Postgres already closed (a restart) took the lock with it, and is not asked:
    /// PostgresNIO never answers a statement written to a closed connection (the relay would hang).
    func release(_ lockKey: Int64, on connection: PostgresConnection) async {
        if !connection.isClosed {
            do {
                try await connection.checkedQuery("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
            } catch {
                try? await connection.close()
            }
        }
        logger.info("outbox relay stopped", metadata: ["db.schema": "\(schema)"])
    }

    static let metricsInterval: Duration = .seconds(1)

    func drainWhileListening(_ connection: PostgresConnection) async throws {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await connection.listen(on: "outbox_\(schema)") { notifications in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await _ in notifications { wake.yield() }
                }
                group.addTask {
                    // The polling fallback rings the same bell as NOTIFY.
                    while !Task.isCancelled {
                        try await Task.sleep(for: pollInterval)
                        wake.yield()
                    }
                }
                group.addTask {
                    wake.yield()
                    // The backlog gauges cost a scan of the unsent rows, as much as a drain's read:
                    // sampled at most once a second, not after every wake-up (one per event under load).
                    var sampled = ContinuousClock.now - Self.metricsInterval
                    for await _ in wakeups {
                        while try await drainBatch() == batchSize {}
                        if ContinuousClock.now - sampled >= Self.metricsInterval {
                            try await updateBacklogMetrics()
                            sampled = ContinuousClock.now
                        }
                    }
                }
                _ = try await group.next()
                group.cancelAll()
            }
        }
    }

    struct Row: Sendable {
        var seq: Int64
        var event: CloudEvent
        var topic: String
        var key: String
    }

    /// Publishes the oldest unsent rows; returns how many were read.
    func drainBatch() async throws -> Int {
        let batch: [Row] = try await Database.query(client, """
            SELECT seq, event_id, topic, key, type, source, subject, time, traceparent, data
            FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT \(batchSize)
            """, logger: logger) { rows in
            var batch: [Row] = []
            for try await (seq, eventId, topic, key, type, source, subject, time, traceparent, data)
                in rows.decode((Int64, UUID, String, String, String, String, String?, Date, String?, ByteBuffer).self) {
                let event = CloudEvent(id: eventId.uuidString.lowercased(), type: type, source: source, time: time,
                                       subject: subject, traceparent: traceparent, data: Array(buffer: data))
                batch.append(Row(seq: seq, event: event, topic: topic, key: key))
            }
            return batch
        }
        guard !batch.isEmpty else { return 0 }
        // Aggregates are published concurrently, each aggregate's rows strictly in `seq` order; after a
        // failure the rest of that aggregate waits for the next round, so order is never broken.
        var byKey: [String: [Row]] = [:]
        var keyOrder: [String] = []
        for row in batch {
            if byKey[row.key] == nil { keyOrder.append(row.key) }
            byKey[row.key, default: []].append(row)
        }
        let results = await withTaskGroup(of: [(Int64, (any Error)?)].self) { group in
            for key in keyOrder {
                let rows = byKey[key]!
                group.addTask {
                    var outcomes: [(Int64, (any Error)?)] = []
                    for row in rows {
                        do {
                            try await publisher.publish(topic: row.topic, key: Array(row.key.utf8), value: row.event.data, headers: row.event.kafkaHeaders)
                            outcomes.append((row.seq, nil))
                        } catch {
                            outcomes.append((row.seq, error))
                            break
                        }
                    }
                    return outcomes
                }
            }
            var collected: [(Int64, (any Error)?)] = []
            for await outcomes in group { collected.append(contentsOf: outcomes) }
            return collected
        }
        let acknowledged = results.filter { $0.1 == nil }.map(\.0)
        if !acknowledged.isEmpty {
            try await Database.query(client, "UPDATE outbox SET sent_at = now() WHERE seq = ANY(\(acknowledged))", logger: logger) { _ in }
            publishedCounter.increment(by: acknowledged.count)
        }
        if let failure = results.first(where: { $0.1 != nil }) {
            failedCounter.increment(by: results.count - acknowledged.count)
            throw failure.1!
        }
        if Task.isCancelled { throw CancellationError() }
        return batch.count
    }

    func updateBacklogMetrics() async throws {
        try await Database.query(client,
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM outbox WHERE sent_at IS NULL",
            logger: logger) { rows in
            for try await (count, age) in rows.decode((Int64, Double).self) {
                backlogGauge.record(count)
                ageGauge.record(age)
            }
        }
    }
}
