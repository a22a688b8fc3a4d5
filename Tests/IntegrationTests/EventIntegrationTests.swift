import Foundation
import Kafka
import Logging
import NIOConcurrencyHelpers
@testable import Platform
import PostgresNIO
import Testing

/// Outbox → dev broker → consumer inbox, with real Postgres and a real Kafka protocol peer.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct EventIntegrationTests {
    let logger = TestInfrastructure.logger

    struct Payload: Codable { var aggregate: String; var sequence: Int }

    /// Handlers that record each applied event in `effects`; events whose aggregate is poisoned fail.
    static func recordingHandlers(type: String, poisoned: NIOLockedValueBox<Set<String>>) -> EventHandlers {
        var handlers = EventHandlers()
        handlers.on(type) { event, transaction in
            let payload = try event.decode(Payload.self)
            if poisoned.withLockedValue({ $0.contains(payload.aggregate) }) {
                throw Problem(.internalError, "poisoned aggregate \(payload.aggregate)")
            }
            try await transaction.query(
                "INSERT INTO effects (event_id, aggregate, sequence) VALUES (\(event.id), \(payload.aggregate), \(payload.sequence))")
        }
        return handlers
    }

    /// Writes `count` events into the outbox, one transaction each, over five aggregates.
    func enqueue(_ count: Int, from start: Int = 0, topic: String, type: String, client: PostgresClient, aggregates: Int = 5) async throws {
        for sequence in start..<(start + count) {
            let aggregate = "agg-\(sequence % aggregates)"
            // A test that ends a session (the relay's) leaves that connection closed in the pool for
            // a moment; the write under test is the relay's, so this one just takes another.
            for attempt in 1...3 {
                do {
                    try await Database.transaction(client, logger: logger) { connection in
                        let event = try CloudEvent.json(type: type, source: "/tests", subject: aggregate, payload: Payload(aggregate: aggregate, sequence: sequence))
                        try await Outbox.enqueue(event, topic: topic, key: aggregate, on: connection, logger: logger)
                    }
                    break
                } catch is Database.ConnectionClosed where attempt < 3 {
                    continue
                }
            }
        }
    }

    /// Every event applied exactly once, and within each aggregate in the order written.
    func expectAppliedOnceInOrder(_ client: PostgresClient, count: Int) async throws {
        #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == Int64(count))
        #expect(try await TestInfrastructure.scalar(client, "SELECT count(DISTINCT event_id) FROM effects") == Int64(count))
        #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0)
        let rows = try await client.query("SELECT aggregate, sequence FROM effects ORDER BY id", logger: logger)
        var last: [String: Int] = [:]
        var ordered = true
        for try await (aggregate, sequence) in rows.decode((String, Int).self) {
            if let previous = last[aggregate], previous > sequence { ordered = false }
            last[aggregate] = sequence
        }
        #expect(ordered, "events of one aggregate were applied out of order")
    }

    func withSchema(_ body: @Sendable (PostgresClient, String) async throws -> Void) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                let set = MigrationSet(PlatformMigrations.all + [TestInfrastructure.effectsMigration])
                try await Migrator(client: client, schema: schema, migrations: set, logger: logger).migrate()
                try await body(client, schema)
            }
        }
    }

    func consumerService(client: PostgresClient, producer: KafkaProducer, topic: String, service: String, handlers: EventHandlers, maxAttempts: Int = 3) throws -> EventConsumerService {
        let consumer = try KafkaConsumer(configuration: TestInfrastructure.kafkaConfiguration("\(service)-consumer"), groupId: service, topics: [topic], logger: logger)
        return EventConsumerService(consumer: consumer, producer: producer, inbox: TestInfrastructure.inbox(client, handlers: handlers),
                                    service: service, maxAttempts: maxAttempts, backoff: .milliseconds(10), logger: logger)
    }

    @Test func outboxEventsReachTheConsumerOnceEachInOrder() async throws {
        try await withSchema { client, schema async throws in
            let topic = "\(schema).things.v1"
            let type = "marketplace.tests.thing.happened.v1"
            try await enqueue(60, topic: topic, type: type, client: client)
            let producer = try KafkaProducer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-producer"), logger: logger)
            let relay = OutboxRelay(client: client, publisher: producer, schema: schema, pollInterval: .milliseconds(200), batchSize: 25, logger: logger)
            let consumer = try consumerService(client: client, producer: producer, topic: topic, service: schema,
                                               handlers: Self.recordingHandlers(type: type, poisoned: .init([])))
            try await withThrowingTaskGroup(of: Void.self) { group async throws in
                group.addTask { try await producer.run() }
                group.addTask { try await relay.run() }
                group.addTask { try await consumer.run() }
                let done = try await TestInfrastructure.eventually(timeout: .seconds(45)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") >= 60
                }
                #expect(done, "not every event arrived")
                // Written after the relay is running: the NOTIFY wake-up path.
                try await enqueue(5, from: 60, topic: topic, type: type, client: client)
                #expect(try await TestInfrastructure.eventually { try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") >= 65 })
                try await Task.sleep(for: .milliseconds(500))
                try await expectAppliedOnceInOrder(client, count: 65)
                group.cancelAll()
            }
        }
    }

    /// Postgres ends the relay's session (as a restart or a failover does, with 57P01): the relay must
    /// not wait on the dead connection (PostgresNIO never answers a statement written to one), but
    /// take a fresh one, lead again, and publish what was written meanwhile.
    @Test func aRelayWhoseSessionPostgresEndedLeadsAgainOnAFreshConnection() async throws {
        try await withSchema { client, schema async throws in
            let topic = "\(schema).things.v1"
            let type = "marketplace.tests.thing.happened.v1"
            try await enqueue(10, topic: topic, type: type, client: client)
            let producer = try KafkaProducer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-producer"), logger: logger)
            let relay = OutboxRelay(client: client, publisher: producer, schema: schema, pollInterval: .milliseconds(200), batchSize: 25, logger: logger)
            let consumer = try consumerService(client: client, producer: producer, topic: topic, service: schema,
                                               handlers: Self.recordingHandlers(type: type, poisoned: .init([])))
            try await withThrowingTaskGroup(of: Void.self) { group async throws in
                group.addTask { try await producer.run() }
                group.addTask { try await relay.run() }
                group.addTask { try await consumer.run() }
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(45)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") >= 10
                })
                let listening: PostgresQuery = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE \("LISTEN%outbox_\(schema)%")"
                #expect(try await TestInfrastructure.scalar(client, listening) == 1)
                #expect(try await TestInfrastructure.scalar(client, """
                    SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE \("LISTEN%outbox_\(schema)%")) t
                    """) == 1)
                try await enqueue(5, from: 10, topic: topic, type: type, client: client)
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(20)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") >= 15
                }, "the relay published again after losing its session")
                #expect(try await TestInfrastructure.scalar(client, listening) == 1, "leading again, on a new session")
                try await expectAppliedOnceInOrder(client, count: 15)
                group.cancelAll()
            }
        }
    }

    /// A publisher standing in for a relay that crashes mid-batch: the first `acknowledged` records
    /// reach the broker normally; the next `lost` reach the broker but their acknowledgements never
    /// arrive (the process died before it could mark them); after that it hangs until cancelled.
    struct CrashingPublisher: EventPublisher {
        let real: KafkaProducer
        let acknowledged: Int
        let lost: Int
        let calls: NIOLockedValueBox<Int>

        struct AcknowledgementLost: Error {}

        func publish(topic: String, key: [UInt8], value: [UInt8], headers: [KafkaHeader]) async throws {
            let call = calls.withLockedValue { count -> Int in
                count += 1
                return count
            }
            guard call <= acknowledged + lost else {
                try await Task.sleep(for: .seconds(3600))
                return
            }
            _ = try await real.send(topic: topic, key: key, value: value, headers: headers)
            if call > acknowledged { throw AcknowledgementLost() }
        }
    }

    @Test func aRelayKilledMidBatchLosesNothingAndTheInboxAbsorbsTheResend() async throws {
        try await withSchema { client, schema in
            let topic = "\(schema).things.v1"
            let type = "marketplace.tests.thing.happened.v1"
            try await enqueue(40, topic: topic, type: type, client: client)
            let producer = try KafkaProducer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-producer"), logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await producer.run() }
                // First relay: 10 records acknowledged, 5 delivered without acknowledgement, then it dies.
                let calls = NIOLockedValueBox(0)
                let crashing = OutboxRelay(client: client, publisher: CrashingPublisher(real: producer, acknowledged: 10, lost: 5, calls: calls),
                                           schema: schema, pollInterval: .milliseconds(200), logger: logger)
                let crashingTask = Task { try await crashing.run() }
                #expect(try await TestInfrastructure.eventually { calls.withLockedValue { $0 } > 15 })
                crashingTask.cancel()
                _ = await crashingTask.result
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 30,
                        "exactly the acknowledged records are marked sent")
                // Restarted relay and a consumer: everything arrives; the 5 records the broker already had
                // are delivered twice and applied once.
                let relay = OutboxRelay(client: client, publisher: producer, schema: schema, pollInterval: .milliseconds(200), logger: logger)
                let consumer = try consumerService(client: client, producer: producer, topic: topic, service: schema,
                                                   handlers: Self.recordingHandlers(type: type, poisoned: .init([])))
                group.addTask { try await relay.run() }
                group.addTask { try await consumer.run() }
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(45)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") >= 40
                })
                try await Task.sleep(for: .seconds(1))  // let any late duplicate arrive
                try await expectAppliedOnceInOrder(client, count: 40)
                group.cancelAll()
            }
        }
    }

    @Test func theSameEventDeliveredTwiceIsAppliedOnce() async throws {
        try await withSchema { client, schema async throws in
            let type = "marketplace.tests.thing.happened.v1"
            let inbox = TestInfrastructure.inbox(client, handlers: Self.recordingHandlers(type: type, poisoned: .init([])))
            let event = try CloudEvent.json(type: type, source: "/tests", subject: "a", payload: Payload(aggregate: "a", sequence: 1))
            #expect(try await inbox.apply(event, topic: "t", logger: logger) == .applied)
            #expect(try await inbox.apply(event, topic: "t", logger: logger) == .duplicate)
            let unknown = CloudEvent(type: "marketplace.tests.other.v1", source: "/tests", data: Array("{}".utf8))
            #expect(try await inbox.apply(unknown, topic: "t", logger: logger) == .ignored)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 1)

            // The same through the broker: one record published twice, one effect.
            let topic = "\(schema).twice.v1"
            let producer = try KafkaProducer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-producer"), logger: logger)
            let again = try CloudEvent.json(type: type, source: "/tests", subject: "b", payload: Payload(aggregate: "b", sequence: 1))
            let consumer = try consumerService(client: client, producer: producer, topic: topic, service: schema,
                                               handlers: Self.recordingHandlers(type: type, poisoned: .init([])))
            try await withThrowingTaskGroup(of: Void.self) { group async throws in
                group.addTask { try await producer.run() }
                for _ in 0..<2 {
                    _ = try await producer.send(topic: topic, key: Array("b".utf8), value: again.data, headers: again.kafkaHeaders)
                }
                group.addTask { try await consumer.run() }
                #expect(try await TestInfrastructure.eventually { try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects WHERE aggregate = 'b'") >= 1 })
                try await Task.sleep(for: .seconds(1))
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects WHERE aggregate = 'b'") == 1)
                group.cancelAll()
            }
        }
    }

    @Test func aPoisonMessageIsDeadLetteredAfterItsTriesAndRedriven() async throws {
        try await withSchema { client, schema async throws in
            let topic = "\(schema).things.v1"
            let type = "marketplace.tests.thing.happened.v1"
            let poisoned = NIOLockedValueBox<Set<String>>(["agg-1"])
            try await enqueue(3, topic: topic, type: type, client: client, aggregates: 3)  // agg-0, agg-1 (poisoned), agg-2
            let producer = try KafkaProducer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-producer"), logger: logger)
            let relay = OutboxRelay(client: client, publisher: producer, schema: schema, pollInterval: .milliseconds(200), logger: logger)
            let consumer = try consumerService(client: client, producer: producer, topic: topic, service: schema,
                                               handlers: Self.recordingHandlers(type: type, poisoned: poisoned), maxAttempts: 3)
            try await withThrowingTaskGroup(of: Void.self) { group async throws in
                group.addTask { try await producer.run() }
                group.addTask { try await relay.run() }
                group.addTask { try await consumer.run() }
                // The healthy events behind the poison one are not held up by it.
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(45)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 2
                })

                // The poison message sits on the dead-letter topic with the failure in its headers.
                let inspector = try KafkaConsumer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-inspector"),
                                                  groupId: "\(schema).inspector", topics: [DeadLetters.topic(for: schema)], logger: logger)
                group.addTask { try await inspector.run() }
                var iterator = inspector.messages.makeAsyncIterator()
                let dead = try await iterator.next()
                let headers = Dictionary((dead?.headers ?? []).map { ($0.key, String(decoding: $0.value ?? [], as: UTF8.self)) }, uniquingKeysWith: { a, _ in a })
                #expect(headers["dlq_original_topic"] == topic)
                #expect(headers["dlq_attempts"] == "3")
                #expect(headers["dlq_error"]?.contains("poisoned aggregate agg-1") == true)
                #expect(headers["dlq_consumer_group"] == schema)
                #expect(headers["ce_type"] == type)
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects WHERE aggregate = 'agg-1'") == 0)

                // Fixed, then redriven: it goes back to its topic and is applied.
                poisoned.withLockedValue { $0 = [] }
                let redriveConsumer = try KafkaConsumer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-redrive"),
                                                        groupId: "\(schema).dlq-redrive", topics: [DeadLetters.topic(for: schema)], logger: logger)
                let redriveProducer = try KafkaProducer(configuration: TestInfrastructure.kafkaConfiguration("\(schema)-redrive"), logger: logger)
                let moved = try await DeadLetterRedrive(consumer: redriveConsumer, producer: redriveProducer, topic: DeadLetters.topic(for: schema), logger: logger).run(idle: .seconds(8), limit: nil)
                #expect(moved == 1)
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(30)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects WHERE aggregate = 'agg-1'") == 1
                })
                group.cancelAll()
            }
        }
    }

    @Test func aBatchAppliesAllOrNothing() async throws {
        try await withSchema { client, _ async throws in
            let type = "marketplace.tests.thing.happened.v1"
            let inbox = TestInfrastructure.inbox(client, handlers: Self.recordingHandlers(type: type, poisoned: .init(["bad"])))
            func event(_ aggregate: String, _ sequence: Int) throws -> (event: CloudEvent, topic: String) {
                (try CloudEvent.json(type: type, source: "/tests", subject: aggregate, payload: Payload(aggregate: aggregate, sequence: sequence)), "t")
            }
            let failing = [try event("a", 1), try event("bad", 2), try event("c", 3)]
            await #expect(throws: Problem.self) { try await inbox.apply(failing, logger: logger) }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 0, "nothing of a failed batch stays")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM inbox") == 0, "nor its inbox rows, so a retry applies them")
            let healthy = [failing[0], failing[2], failing[0]]
            #expect(try await inbox.apply(healthy, logger: logger) == [.applied, .applied, .duplicate])
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 2)
        }
    }

    @Test func theOutboxRefusesAnEventIdThatIsNotAUUID() async throws {
        try await withSchema { client, _ async throws in
            let event = CloudEvent(id: "not-a-uuid", type: "marketplace.tests.thing.happened.v1", source: "/tests", data: Array("{}".utf8))
            await #expect(throws: OutboxError.eventIdNotAUUID("not-a-uuid")) {
                try await Database.transaction(client, logger: logger) { connection in
                    try await Outbox.enqueue(event, topic: "t", key: "k", on: connection, logger: logger)
                }
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox") == 0)
        }
    }

    @Test func sentRowsAreDroppedAfterAWeekButUnsentOnesNever() async throws {
        try await withSchema { client, schema in
            try await enqueue(3, topic: "\(schema).things.v1", type: "marketplace.tests.thing.happened.v1", client: client)
            try await client.query("""
                UPDATE outbox SET sent_at = now() - interval '8 days' WHERE seq = (SELECT min(seq) FROM outbox);
                """, logger: logger)
            try await client.query("UPDATE outbox SET sent_at = now() - interval '6 days' WHERE seq = (SELECT max(seq) FROM outbox)", logger: logger)
            try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                try await Jobs.housekeeping().perform(recurring: "prune-outbox", in: transaction)
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox") == 2, "the week-old sent row is gone")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1, "unsent rows are never dropped")
        }
    }
}
