import Foundation
import Kafka
import Testing

@Suite("Offset ranges against librdkafka's mock cluster")
struct OffsetRangeTests {
    @Test("offsetRanges reports what each partition holds; endOffsets its upper bound")
    func rangesFollowWrites() async throws {
        try await withTimeout {
            let cluster = try MockKafkaCluster(logger: testLogger)
            try cluster.createTopic("identity.sessions.v1", partitions: 2)
            let producer = try KafkaProducer(configuration: configuration(cluster, clientId: "identity"), logger: testLogger)
            let consumer = try KafkaConsumer(configuration: configuration(cluster, clientId: "gateway"), groupId: "gateway-ranges",
                                             topics: ["identity.sessions.v1"], logger: testLogger)
            try await withServices([producer, consumer]) {
                #expect(try await consumer.offsetRanges(topic: "identity.sessions.v1") == [0: 0..<0, 1: 0..<0])
                var written: [Int32: Int64] = [:]
                for index in 0..<5 {
                    let (partition, _) = try await producer.send(topic: "identity.sessions.v1", key: "user-\(index)".bytes, value: "r".bytes)
                    written[partition, default: 0] += 1
                }
                let ranges = try await consumer.offsetRanges(topic: "identity.sessions.v1")
                #expect(ranges == [0: 0..<(written[0] ?? 0), 1: 0..<(written[1] ?? 0)])
                #expect(try await consumer.endOffsets(topic: "identity.sessions.v1") == ranges.mapValues(\.upperBound))
                #expect(try await consumer.offsetRanges(topic: "no.such.topic").isEmpty, "an unknown topic has no partitions")
            }
        }
    }
}
