import CRdKafka
import Logging
import Synchronization

/// An in-memory Kafka cluster on loopback, hosted by librdkafka's mock cluster
/// (`rdkafka_mock.h`), for tests and the `devbroker` executable.
///
/// Other clients, in this or other processes (kcat included), use ``bootstrapServers`` like a
/// real broker. Verified against librdkafka 2.0.2's mock: the idempotent producer
/// (InitProducerId), consumer groups with committed offsets (Join/Sync/Heartbeat/LeaveGroup,
/// OffsetCommit/OffsetFetch), Metadata and ListOffsets work, so ``KafkaProducer`` and
/// ``KafkaConsumer`` need no different settings against it. Differences from a real broker:
/// - Everything is in memory and lost on shutdown.
/// - No admin API (CreateTopics): create topics with ``createTopic(_:partitions:)``; unknown
///   topics are auto-created on first metadata request with the mock's default partition count.
/// - The mock group coordinator waits 3 s before completing the first rebalance of a new group
///   (like `group.initial.rebalance.delay.ms`), so a fresh consumer receives its first record
///   after a few seconds.
/// - When the last member leaves a group (clean `rd_kafka_consumer_close`), the mock does not
///   return the group to "empty": the next member's join waits `session.timeout.ms` - 1 s of the
///   member that left (44 s with librdkafka's default of 45 s). Consumers that restart against
///   the mock should use ``fastRejoinConsumerProperties`` (about 5 s instead).
/// - The mock rejects OffsetCommit while a group is joining (REBALANCE_IN_PROGRESS), where a real
///   broker accepts commits from the current generation. With the eager assignors
///   (`range`, `roundrobin`) the commit made when partitions are revoked therefore fails and their
///   next owner re-reads records since the last periodic commit. The consumer's default,
///   `cooperative-sticky`, revokes after the group synced and its commit succeeds.
public final class MockKafkaCluster: Sendable {
    /// Consumer settings that make a restarted group member rejoin the mock in about 5 s (see the
    /// type's notes). Also valid on real brokers (6 s is their default minimum session timeout).
    public static let fastRejoinConsumerProperties: [String: String] = [
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "2000",
    ]

    /// `host:port` list of the mock brokers, for `bootstrap.servers`.
    public let bootstrapServers: String

    private let host: RdKafkaHandle
    private let brokers: Int32
    private let cluster: Mutex<MockClusterPointer?>
    /// Keeps the host handle's log context alive until the handle is destroyed.
    private let context: LibrdkafkaCallbackContext

    private struct MockClusterPointer: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    /// Starts `brokers` mock brokers listening on ephemeral loopback ports.
    public init(brokers: Int32 = 1, logger: Logger) throws {
        // librdkafka needs a client handle to own the mock cluster; this producer never connects.
        // Its logs (e.g. "no bootstrap.servers configured") are expected, hence capped at debug.
        let context = LibrdkafkaCallbackContext(logger: logger, maximumLogLevel: .debug)
        // The mock brokers' connections take the host client's socket settings: without this their
        // small answers wait on Nagle's algorithm and the client's delayed ACK (~40 ms each).
        let conf = try Librdkafka.makeConfiguration([("socket.nagle.disable", "true")], context: context)
        let host = try Librdkafka.makeClient(RD_KAFKA_PRODUCER, conf: conf)
        guard let cluster = rd_kafka_mock_cluster_new(host.pointer, brokers) else {
            rd_kafka_destroy(host.pointer)
            throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, message: "rd_kafka_mock_cluster_new failed")
        }
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        self.host = host
        self.brokers = brokers
        self.cluster = Mutex(MockClusterPointer(pointer: cluster))
        self.context = context
    }

    deinit {
        shutdown()
        rd_kafka_destroy(host.pointer)
    }

    /// Creates `name` with `partitions` partitions (replication factor 1).
    public func createTopic(_ name: String, partitions: Int32 = 3) throws {
        try cluster.withLock { cluster in
            guard let cluster else { throw KafkaError.shutdown("mock cluster is shut down") }
            let err = rd_kafka_mock_topic_create(cluster.pointer, name, partitions, 1)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
        }
    }

    /// Takes every broker down (`true`: connections dropped, new ones refused) or back up, keeping
    /// every topic's records and every group's committed offsets: what clients see while a real
    /// broker restarts with its logs on disk.
    public func setBrokersDown(_ down: Bool) throws {
        try cluster.withLock { cluster in
            guard let cluster else { throw KafkaError.shutdown("mock cluster is shut down") }
            for id in 1...brokers {
                let err = down ? rd_kafka_mock_broker_set_down(cluster.pointer, id) : rd_kafka_mock_broker_set_up(cluster.pointer, id)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
            }
        }
    }

    /// Stops the brokers and drops all data. Idempotent; clients still connected see the
    /// brokers as down.
    public func shutdown() {
        cluster.withLock { cluster in
            guard let running = cluster else { return }
            rd_kafka_mock_cluster_destroy(running.pointer)
            cluster = nil
        }
    }
}
