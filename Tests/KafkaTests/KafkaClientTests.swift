import Foundation
import Kafka
import ServiceLifecycle
import Testing

// One test at a time: each runs its own mock cluster and consumer groups, and the rebalance test's
// expectations hold only while its first member keeps up with its heartbeats, which the others'
// load on two cores could starve.
@Suite("Kafka clients against librdkafka's mock cluster", .serialized)
struct KafkaClientTests {
    @Test(
        "acknowledged sends are consumed with their key, value and headers",
        arguments: ["range,roundrobin", "cooperative-sticky"]  // eager and incremental rebalancing
    )
    func produceAndConsume(assignmentStrategy: String) async throws {
        try await withTimeout {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("identity.users.v1", partitions: 3)
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "identity"), logger: testLogger)
            var consumerConfiguration = configuration(cluster, clientId: "listings")
            consumerConfiguration.properties["partition.assignment.strategy"] = assignmentStrategy
            let consumer = try KafkaConsumer(
                configuration: consumerConfiguration,
                groupId: "listings",
                topics: ["identity.users.v1"],
                logger: testLogger
            )

            try await withServices([producer, consumer]) {
                #expect(await producer.isConnected(timeout: .seconds(5)))

                let first = try await producer.send(
                    topic: "identity.users.v1",
                    key: "user-1".bytes,
                    value: #"{"event":"user.registered","n":1}"#.bytes,
                    headers: [
                        KafkaHeader(key: "event-id", value: "e-1".bytes),
                        KafkaHeader(key: "traceparent", value: "00-abc-def-01".bytes),
                        KafkaHeader(key: "null", value: nil),
                        KafkaHeader(key: "empty", value: []),
                    ]
                )
                let second = try await producer.send(
                    topic: "identity.users.v1",
                    key: "user-1".bytes,
                    value: #"{"event":"user.registered","n":2}"#.bytes,
                    headers: [KafkaHeader(key: "event-id", value: "e-2".bytes)]
                )
                let other = try await producer.send(topic: "identity.users.v1", key: nil, value: "no key".bytes)
                let empty = try await producer.send(topic: "identity.users.v1", key: [], value: [])

                // Same key, same partition, consecutive offsets.
                #expect((0..<3).contains(first.partition))
                #expect(second.partition == first.partition)
                #expect(second.offset == first.offset + 1)
                #expect(other.offset >= 0)

                let received = try await take(4, from: consumer)
                #expect(received.count == 4)
                let byEventID = Dictionary(grouping: received) { $0.header("event-id")?.value?.text ?? "none" }

                let firstReceived = try #require(byEventID["e-1"]?.first)
                #expect(firstReceived.topic == "identity.users.v1")
                #expect(firstReceived.key?.text == "user-1")
                #expect(firstReceived.value.text == #"{"event":"user.registered","n":1}"#)
                #expect(firstReceived.partition == first.partition)
                #expect(firstReceived.offset == first.offset)
                #expect(firstReceived.headers == [
                    KafkaHeader(key: "event-id", value: "e-1".bytes),
                    KafkaHeader(key: "traceparent", value: "00-abc-def-01".bytes),
                    KafkaHeader(key: "null", value: nil),
                    KafkaHeader(key: "empty", value: []),
                ])
                #expect(firstReceived.timestamp != nil)

                let secondReceived = try #require(byEventID["e-2"]?.first)
                #expect(secondReceived.offset == second.offset)
                #expect(secondReceived.value.text == #"{"event":"user.registered","n":2}"#)

                let unkeyed = try #require(received.first { $0.value.text == "no key" })
                #expect(unkeyed.key == nil)
                #expect(unkeyed.value.text == "no key")
                #expect(unkeyed.headers.isEmpty)
                #expect((unkeyed.partition, unkeyed.offset) == (other.partition, other.offset))

                // An empty key and value stay empty (not null).
                let emptyReceived = try #require(received.first { $0.partition == empty.partition && $0.offset == empty.offset })
                #expect(emptyReceived.key == [])
                #expect(emptyReceived.value == [])

                for message in received {
                    try consumer.storeOffset(message)
                }
                try await consumer.commit()
                // Everything produced was consumed: no lag on the partitions that had records.
                let lag = consumer.lag()
                #expect(Set(lag.keys) == Set(received.map(\.partition)))
                #expect(lag.values.allSatisfy { $0 == 0 })
            }
        }
    }

    @Test("an offset is committed only after storeOffset")
    func offsetsFollowStoreOffset() async throws {
        try await withTimeout(.seconds(90)) {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("orders.events.v1", partitions: 1)
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "orders"), logger: testLogger)

            func makeConsumer() throws -> KafkaConsumer {
                try KafkaConsumer(
                    configuration: configuration(cluster, clientId: "billing"),
                    groupId: "billing",
                    topics: ["orders.events.v1"],
                    logger: testLogger
                )
            }

            try await withServices([producer]) {
                _ = try await producer.send(topic: "orders.events.v1", key: "o-1".bytes, value: "first".bytes)

                // Reads but never stores (its transaction "failed"): the group's position stays put.
                let unstored = try makeConsumer()
                let seenByUnstored = try await withServices([unstored]) { try await take(1, from: unstored, within: .seconds(20)) }
                #expect(seenByUnstored.map(\.value.text) == ["first"])

                // A second member of the group gets the same record again, and this time stores it.
                let storing = try makeConsumer()
                let seenByStoring = try await withServices([storing]) {
                    let messages = try await take(1, from: storing, within: .seconds(20))
                    for message in messages { try storing.storeOffset(message) }
                    try await storing.commit()
                    return messages
                }
                #expect(seenByStoring.map(\.value.text) == ["first"])
                #expect(seenByStoring.first?.offset == seenByUnstored.first?.offset)

                // After the commit the group moves on: the next member starts at the new record.
                _ = try await producer.send(topic: "orders.events.v1", key: "o-2".bytes, value: "second".bytes)
                let next = try makeConsumer()
                let seenByNext = try await withServices([next]) { try await take(1, from: next, within: .seconds(20)) }
                #expect(seenByNext.map(\.value.text) == ["second"])
            }
        }
    }

    // With the default cooperative-sticky assignor (eager assignors cannot commit during a
    // rebalance on the mock cluster; see MockKafkaCluster).
    @Test("a rebalance commits the stored offsets of revoked partitions")
    func rebalanceCommitsStoredOffsets() async throws {
        try await withTimeout(.seconds(90)) {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("billing.events.v1", partitions: 2)
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "billing"), logger: testLogger)
            // No auto commit for the first member: only the rebalance callback can commit its offsets.
            var firstConfiguration = configuration(cluster, clientId: "orders-1")
            firstConfiguration.properties["enable.auto.commit"] = "false"
            let first = try KafkaConsumer(
                configuration: firstConfiguration, groupId: "orders", topics: ["billing.events.v1"], logger: testLogger
            )

            try await withServices([producer]) {
                for index in 0..<10 {
                    _ = try await producer.send(topic: "billing.events.v1", key: "k\(index)".bytes, value: "old-\(index)".bytes)
                }
                let firstGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: [first], logger: testLogger))
                async let firstRun: Void = firstGroup.run()

                let old = try await take(10, from: first, within: .seconds(20))
                #expect(old.count == 10)
                for message in old { try first.storeOffset(message) }

                // Keep the first member polling (it serves the rebalance) until it shuts down.
                async let laterByFirst = take(100, from: first)
                // Creating a consumer joins the group.
                let second = try KafkaConsumer(
                    configuration: configuration(cluster, clientId: "orders-2"),
                    groupId: "orders",
                    topics: ["billing.events.v1"],
                    logger: testLogger
                )
                let seenBySecond = try await withServices([second]) {
                    var acks: [(partition: Int32, offset: Int64)] = []
                    for index in 0..<10 {
                        acks.append(try await producer.send(topic: "billing.events.v1", key: "k\(index)".bytes, value: "new-\(index)".bytes))
                    }
                    // Two members, two partitions: the second member owns exactly one of them.
                    let head = try await take(1, from: second, within: .seconds(30))
                    guard let partition = head.first?.partition else { return head }
                    let expected = acks.filter { $0.partition == partition }.count
                    return head + (try await take(expected - 1, from: second, within: .seconds(10)))
                }
                await firstGroup.triggerGracefulShutdown()
                let later = try await laterByFirst
                try await firstRun

                // Had the revoked partition's offsets not been committed, its new owner would
                // start over at offset 0 and see old records again.
                #expect(!seenBySecond.isEmpty)
                #expect(seenBySecond.allSatisfy { $0.value.text.hasPrefix("new-") })
                #expect(later.allSatisfy { $0.value.text.hasPrefix("new-") })
                #expect(Set((seenBySecond + later).map(\.value.text)) == Set((0..<10).map { "new-\($0)" }))
            }
        }
    }

    @Test("lag is the cached high watermark minus the position")
    func lagCountsUnconsumedRecords() async throws {
        try await withTimeout {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("messaging.events.v1", partitions: 1)
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "messaging"), logger: testLogger)
            let consumer = try KafkaConsumer(
                configuration: configuration(cluster, clientId: "orders"),
                groupId: "orders",
                topics: ["messaging.events.v1"],
                logger: testLogger
            )
            try await withServices([producer, consumer]) {
                #expect(await consumer.isConnected(timeout: .seconds(5)))
                #expect(consumer.lag().isEmpty)
                for index in 0..<5 {
                    _ = try await producer.send(topic: "messaging.events.v1", key: nil, value: "m\(index)".bytes)
                }
                let first = try await take(1, from: consumer)
                #expect(first.map(\.offset) == [0])
                #expect(consumer.lag() == [0: 4])
                #expect(consumer.lag(topic: "messaging.events.v1") == [0: 4])
                #expect(consumer.lag(topic: "other").isEmpty)

                let rest = try await take(4, from: consumer)
                #expect(rest.map(\.offset) == [1, 2, 3, 4])
                #expect(consumer.lag() == [0: 0])
            }
        }
    }

    @Test("shutdown fails sends that were never acknowledged, and later sends")
    func shutdownFailsPendingSends() async throws {
        try await withTimeout {
            // Nothing listens on port 1: the record can never be delivered.
            let producer = try KafkaProducer(
                configuration: KafkaConfiguration(bootstrapServers: "127.0.0.1:1", clientId: "orphan"),
                flushTimeout: .milliseconds(500),
                logger: testLogger
            )
            #expect(await producer.isConnected(timeout: .milliseconds(300)) == false)

            async let pending = outcome {
                try await producer.send(topic: "nowhere.v1", key: nil, value: "lost".bytes)
            }
            try await withServices([producer]) {
                try await Task.sleep(for: .milliseconds(300))
            }
            let pendingOutcome = await pending
            #expect(throws: KafkaError.self) { try pendingOutcome.get() }

            let late = await #expect(throws: KafkaError.self) {
                try await producer.send(topic: "nowhere.v1", key: nil, value: "late".bytes)
            }
            #expect(late?.isShutdown == true)
        }
    }

    @Test("the consumer's message sequence ends when it shuts down")
    func consumerSequenceEndsOnShutdown() async throws {
        try await withTimeout {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("listings.events.v1", partitions: 1)
            let consumer = try KafkaConsumer(
                configuration: configuration(cluster, clientId: "search"),
                groupId: "search",
                topics: ["listings.events.v1"],
                logger: testLogger
            )
            async let read = take(1, from: consumer)
            try await withServices([consumer]) {
                try await Task.sleep(for: .milliseconds(500))
            }
            // Nothing was produced: the sequence finished empty instead of waiting forever.
            #expect(try await read.isEmpty)
            #expect(throws: KafkaError.self) {
                try consumer.storeOffset(KafkaMessage(
                    topic: "listings.events.v1", partition: 0, offset: 0,
                    key: nil, value: [], headers: [], timestamp: nil
                ))
            }
        }
    }

    @Test("invalid librdkafka properties are rejected with their name")
    func invalidConfiguration() throws {
        let configuration = KafkaConfiguration(
            bootstrapServers: "127.0.0.1:9092",
            clientId: "test",
            properties: ["no.such.property": "1"]
        )
        let error = #expect(throws: KafkaError.self) {
            _ = try KafkaProducer(configuration: configuration, logger: testLogger)
        }
        #expect(error?.message.contains("no.such.property") == true)
    }

    @Test("nextBatch returns the records already fetched, in partition order, up to its maximum")
    func batches() async throws {
        try await withTimeout {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("batch.v1", partitions: 1)
            // Every record is on the broker before the consumer starts, so its first fetch brings
            // several: a consumer running alongside the sends could fetch them one at a time.
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "batch-producer"), logger: testLogger)
            try await withServices([producer]) {
                for index in 0..<10 {
                    _ = try await producer.send(topic: "batch.v1", key: "k".bytes, value: "\(index)".bytes)
                }
            }
            let consumer = try KafkaConsumer(configuration: configuration(cluster, clientId: "batch-consumer"), groupId: "batch", topics: ["batch.v1"], logger: testLogger)
            try await withServices([consumer]) {
                var values: [String] = []
                var largest = 0
                while values.count < 10 {
                    let batch = try await consumer.nextBatch(maximum: 4)
                    #expect(!batch.isEmpty && batch.count <= 4)
                    largest = max(largest, batch.count)
                    values += batch.map { String(decoding: $0.value, as: UTF8.self) }
                }
                #expect(values == (0..<10).map(String.init))
                #expect(largest > 1, "records already fetched come together")
            }
        }
    }

    @Test("a broker taken down and brought back keeps its records, and a send made meanwhile is delivered after")
    func brokerOutageKeepsRecords() async throws {
        try await withTimeout {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("outage.v1", partitions: 1)
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "outage-producer"), logger: testLogger)
            try await withServices([producer]) {
                let before = try await producer.send(topic: "outage.v1", key: "k".bytes, value: "before".bytes)
                try cluster.setBrokersDown(true)
                let during = Task { try await producer.send(topic: "outage.v1", key: "k".bytes, value: "during".bytes) }
                try await Task.sleep(for: .seconds(1))
                try cluster.setBrokersDown(false)
                let delivered = try await during.value
                #expect(delivered.offset == before.offset + 1, "the record sent before the outage is still there")
            }
            let consumer = try KafkaConsumer(configuration: configuration(cluster, clientId: "outage-consumer"), groupId: "outage",
                                             topics: ["outage.v1"], logger: testLogger)
            try await withServices([consumer]) {
                let values = try await take(2, from: consumer).map { String(decoding: $0.value, as: UTF8.self) }
                #expect(values == ["before", "during"])
            }
        }
    }
}
