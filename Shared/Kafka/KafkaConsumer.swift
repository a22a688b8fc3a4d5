import CRdKafka
import Foundation
import Dispatch
import Logging
import ServiceLifecycle
import Synchronization

/// A consumer-group member that hands out records one at a time through ``messages`` and commits
/// only offsets the application stored after finishing its work (at-least-once).
///
/// Settings: `group.id` and `enable.auto.offset.store=false` are enforced; `enable.auto.commit=true`
/// (librdkafka periodically commits the *stored* offsets), `auto.offset.reset=earliest` and
/// `partition.assignment.strategy=cooperative-sticky` are defaults that
/// ``KafkaConfiguration/properties`` may override (all members of a group must agree on the strategy).
///
/// Rebalances: a rebalance callback assigns and unassigns (eager or incremental), and commits the
/// stored offsets before partitions are revoked so their next owner continues after them.
///
/// Typical loop: `for try await message in consumer.messages { try await handle(message) /* commits a
/// DB transaction */; try consumer.storeOffset(message) }`.
///
/// Run it as a `Service`: on graceful shutdown or cancellation ``run()`` stops handing out records,
/// commits the stored offsets, leaves the group (`rd_kafka_consumer_close`) and destroys the client.
public final class KafkaConsumer: Service, Sendable {
    private let handle: RdKafkaHandle
    private let context: ConsumerContext
    private let lifecycle = Mutex(Lifecycle.open)
    /// Serialises every blocking call on the handle (poll, commit, metadata, close, destroy),
    /// keeping them off the cooperative pool and never concurrent with destruction.
    private let pollQueue = DispatchQueue(label: "kafka.consumer.poll")
    private let logger: Logger

    /// How long one rd_kafka_consumer_poll waits; bounds how quickly `next()` notices cancellation.
    private static let pollTimeoutMilliseconds: Int32 = 100

    private enum Lifecycle {
        /// Handing out records.
        case open
        /// Shutdown started: no more records; the handle is still valid.
        case closing
        /// The handle is destroyed.
        case closed
    }

    /// Creates the consumer and subscribes to `topics` (the group join happens in the background).
    /// - Parameters:
    ///   - groupId: The consumer group; by convention the consuming service's name.
    public init(configuration: KafkaConfiguration, groupId: String, topics: [String], logger: Logger) throws {
        let context = ConsumerContext(logger: logger)
        let properties = configuration.librdkafkaProperties(
            defaults: [
                "enable.auto.commit": "true",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": "false",
                // Incremental rebalancing: only moving partitions are revoked, and revocation
                // happens after the group synced, where the commit of their offsets is accepted
                // (the mock cluster rejects it during an eager rebalance; see MockKafkaCluster).
                "partition.assignment.strategy": "cooperative-sticky",
                // Fetch and commit requests are small: no waiting for Nagle and delayed ACKs.
                "socket.nagle.disable": "true",
            ],
            required: [
                "group.id": groupId,
                // An offset is stored only by storeOffset(_:), after the application's work committed.
                "enable.auto.offset.store": "false",
            ]
        )
        let conf = try Librdkafka.makeConfiguration(properties, context: context)
        rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
        let handle = try Librdkafka.makeClient(RD_KAFKA_CONSUMER, conf: conf)

        // Route the main queue (errors, rebalances) to rd_kafka_consumer_poll.
        rd_kafka_poll_set_consumer(handle.pointer)
        let subscription = rd_kafka_topic_partition_list_new(Int32(topics.count))
        defer { rd_kafka_topic_partition_list_destroy(subscription) }
        for topic in topics {
            rd_kafka_topic_partition_list_add(subscription, topic, RD_KAFKA_PARTITION_UA)
        }
        let err = rd_kafka_subscribe(handle.pointer, subscription)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_destroy(handle.pointer)
            throw KafkaError(err)
        }

        self.handle = handle
        self.context = context
        self.logger = logger
    }

    deinit {
        // Only reached without run() having shut down (it holds `self` while running).
        if lifecycle.withLock({ $0 }) != .closed {
            rd_kafka_consumer_close(handle.pointer)
            rd_kafka_destroy(handle.pointer)
        }
    }

    /// The records of the subscribed topics, in order per partition. Iteration ends (`nil`) when
    /// the consumer shuts down or the iterating task is cancelled; it throws ``KafkaError`` on a
    /// fatal consumer error. Transient errors (broker down, unknown topic) are retried by librdkafka
    /// and only logged at debug level. Rebalances are served inside `next()`, so keep iterating:
    /// a member that does not call it for `max.poll.interval.ms` (5 min) is removed from the group.
    public var messages: Messages { Messages(consumer: self) }

    /// Pull-based sequence of consumed records; see ``KafkaConsumer/messages``.
    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = KafkaMessage
        let consumer: KafkaConsumer

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(consumer: consumer)
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            let consumer: KafkaConsumer

            public mutating func next() async throws -> KafkaMessage? {
                try await consumer.nextMessage()
            }
        }
    }

    /// Marks `message` as processed: its offset + 1 becomes the group's position for that
    /// partition at the next (auto or explicit) commit. Call only after the work it caused committed.
    /// - Throws: ``KafkaError`` if the partition is no longer assigned to this consumer (it will be
    ///   redelivered to the new owner) or the consumer is closed.
    public func storeOffset(_ message: KafkaMessage) throws {
        try lifecycle.withLock { state in
            guard state != .closed else { throw KafkaError.shutdown("consumer is closed") }
            guard let offsets = rd_kafka_topic_partition_list_new(1) else {
                throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, message: "cannot allocate a partition list")
            }
            defer { rd_kafka_topic_partition_list_destroy(offsets) }
            let entry = rd_kafka_topic_partition_list_add(offsets, message.topic, message.partition)
            entry?.pointee.offset = message.offset + 1
            let err = rd_kafka_offsets_store(handle.pointer, offsets)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err) }
            if let entryError = entry?.pointee.err, entryError != RD_KAFKA_RESP_ERR_NO_ERROR {
                throw KafkaError(entryError)
            }
        }
    }

    /// Synchronously commits the stored offsets (no-op when nothing new was stored).
    public func commit() async throws {
        let failure: KafkaError? = await runBlocking(on: pollQueue) { [self] in
            guard lifecycle.withLock({ $0 }) != .closed else { return KafkaError.shutdown("consumer is closed") }
            return ConsumerContext.commitStoredOffsets(handle.pointer)
        }
        if let failure { throw failure }
    }

    /// Consumer lag per assigned partition number: cached high watermark minus the consumer's
    /// position. Makes no network calls; partitions whose position or watermark is not known yet
    /// (nothing consumed since assignment) are omitted. With several topics, lags of equally
    /// numbered partitions are summed; use ``lag(topic:)`` to keep them apart.
    public func lag() -> [Int32: Int64] {
        partitionLags().reduce(into: [:]) { result, entry in
            result[entry.key.partition, default: 0] += entry.value
        }
    }

    /// ``lag()`` restricted to one topic.
    public func lag(topic: String) -> [Int32: Int64] {
        partitionLags().reduce(into: [:]) { result, entry in
            if entry.key.topic == topic { result[entry.key.partition] = entry.value }
        }
    }

    /// The current end (high watermark) of every partition of `topic`, asked of the brokers:
    /// lets a reader stop at what was there when it started.
    public func endOffsets(topic: String, timeout: Duration = .seconds(5)) async throws -> [Int32: Int64] {
        let milliseconds = timeout.librdkafkaMilliseconds
        let result = await runBlocking(on: pollQueue) { [self] () -> Result<[Int32: Int64], KafkaError> in
            guard lifecycle.withLock({ $0 }) != .closed else { return .failure(KafkaError.shutdown("consumer is closed")) }
            return Librdkafka.endOffsets(handle.pointer, topic: topic, timeoutMilliseconds: milliseconds)
        }
        return try result.get()
    }

    /// The offsets every partition of `topic` holds now (low ..< high watermark), asked of the
    /// brokers: an empty range means there is nothing to read there, even if records were once
    /// written and then deleted by retention. A topic the brokers do not know has no partitions.
    public func offsetRanges(topic: String, timeout: Duration = .seconds(5)) async throws -> [Int32: Range<Int64>] {
        let milliseconds = timeout.librdkafkaMilliseconds
        let result = await runBlocking(on: pollQueue) { [self] () -> Result<[Int32: Range<Int64>], KafkaError> in
            guard lifecycle.withLock({ $0 }) != .closed else { return .failure(KafkaError.shutdown("consumer is closed")) }
            return Librdkafka.offsetRanges(handle.pointer, topic: topic, timeoutMilliseconds: milliseconds)
        }
        return try result.get()
    }

    /// Whether a broker answers a metadata request within `timeout`, for readiness checks.
    public func isConnected(timeout: Duration = .seconds(2)) async -> Bool {
        let milliseconds = timeout.librdkafkaMilliseconds
        return await runBlocking(on: pollQueue) { [self] in
            guard lifecycle.withLock({ $0 }) != .closed else { return false }
            return Librdkafka.brokersReachable(handle.pointer, timeoutMilliseconds: milliseconds)
        }
    }

    /// Waits for graceful shutdown (or cancellation), then stops handing out records, commits
    /// stored offsets, leaves the group and destroys the client.
    ///
    /// A failed final commit (e.g. a rebalance in progress) is retried by the revocation in
    /// `rd_kafka_consumer_close`; if that fails too, uncommitted records are redelivered to the
    /// group, as at-least-once delivery allows, so shutdown does not fail for it.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    private func close() async {
        let shouldClose = lifecycle.withLock { state in
            guard state == .open else { return false }
            state = .closing
            return true
        }
        guard shouldClose else { return }
        logger.debug("kafka consumer closing")
        await runBlocking(on: pollQueue) { [self] in
            if let failure = ConsumerContext.commitStoredOffsets(handle.pointer) {
                logger.debug("kafka final commit failed", metadata: ["kafka.error": "\(failure.name)"])
            }
            // Leaves the group; revocation runs rebalanceCallback (and its commit) on this thread.
            let closeError = rd_kafka_consumer_close(handle.pointer)
            if closeError != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.debug("kafka consumer close failed", metadata: ["kafka.error": "\(KafkaError(closeError).name)"])
            }
            lifecycle.withLock { state in
                rd_kafka_destroy(handle.pointer)
                state = .closed
            }
        }
        logger.debug("kafka consumer closed")
    }

    private enum PollOutcome: Sendable {
        case message(KafkaMessage)
        case nothing
        case closed
        case failed(KafkaError)
    }

    private func nextMessage() async throws -> KafkaMessage? {
        while !Task.isCancelled {
            switch await runBlocking(on: pollQueue, { [self] in pollOnce() }) {
            case .message(let message): return message
            case .nothing: continue
            case .closed: return nil
            case .failed(let error): throw error
            }
        }
        return nil
    }

    /// The next record and up to `maximum - 1` more that are already fetched, without waiting for
    /// more: lets a consumer apply several records in one database transaction. Waits like
    /// `messages` for the first record; an empty array means the consumer is shutting down.
    public func nextBatch(maximum: Int) async throws -> [KafkaMessage] {
        guard let first = try await nextMessage() else { return [] }
        guard maximum > 1 else { return [first] }
        let more: [KafkaMessage] = await runBlocking(on: pollQueue) { [self] in
            var collected: [KafkaMessage] = []
            while collected.count < maximum - 1, case .message(let message) = pollOnce(timeoutMilliseconds: 0) {
                collected.append(message)
            }
            return collected
        }
        return [first] + more
    }

    /// One short rd_kafka_consumer_poll. Runs on `pollQueue`.
    private func pollOnce(timeoutMilliseconds: Int32 = KafkaConsumer.pollTimeoutMilliseconds) -> PollOutcome {
        guard lifecycle.withLock({ $0 }) == .open else { return .closed }
        guard let rkmessage = rd_kafka_consumer_poll(handle.pointer, timeoutMilliseconds) else {
            return .nothing
        }
        defer { rd_kafka_message_destroy(rkmessage) }
        let err = rkmessage.pointee.err
        if err == RD_KAFKA_RESP_ERR_NO_ERROR {
            return .message(Librdkafka.message(from: rkmessage))
        }
        if err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            return .nothing
        }
        var buffer = [CChar](repeating: 0, count: 512)
        let fatal = rd_kafka_fatal_error(handle.pointer, &buffer, buffer.count)
        if fatal != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .failed(KafkaError(fatal, message: String(errorBuffer: buffer)))
        }
        logger.debug("kafka consumer error", metadata: [
            "kafka.error": "\(KafkaError(err).name)",
            "kafka.reason": "\(Librdkafka.errorMessage(rkmessage))",
        ])
        return .nothing
    }

    private func partitionLags() -> [TopicPartition: Int64] {
        let assigned = context.assignment.withLock { $0 }
        guard !assigned.isEmpty else { return [:] }
        return lifecycle.withLock { state in
            guard state != .closed, let positions = rd_kafka_topic_partition_list_new(Int32(assigned.count)) else {
                return [:]
            }
            defer { rd_kafka_topic_partition_list_destroy(positions) }
            for partition in assigned {
                rd_kafka_topic_partition_list_add(positions, partition.topic, partition.partition)
            }
            // Both calls read client-side state only.
            guard rd_kafka_position(handle.pointer, positions) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [:] }
            var lags: [TopicPartition: Int64] = [:]
            for entry in TopicPartition.entries(of: positions) where entry.err == RD_KAFKA_RESP_ERR_NO_ERROR && entry.offset >= 0 {
                var low: Int64 = -1
                var high: Int64 = -1
                let err = rd_kafka_get_watermark_offsets(handle.pointer, entry.topic, entry.partition, &low, &high)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { continue }
                lags[TopicPartition(entry)] = max(0, high - entry.offset)
            }
            return lags
        }
    }
}

struct TopicPartition: Hashable, Sendable {
    var topic: String
    var partition: Int32

    init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    init(_ entry: rd_kafka_topic_partition_t) {
        self.init(topic: String(cString: entry.topic), partition: entry.partition)
    }

    static func entries(of list: UnsafePointer<rd_kafka_topic_partition_list_t>?) -> [rd_kafka_topic_partition_t] {
        guard let list, let elements = list.pointee.elems else { return [] }
        return Array(UnsafeBufferPointer(start: elements, count: Int(list.pointee.cnt)))
    }
}

/// The consumer's callback context: tracks the current assignment for ``KafkaConsumer/lag()``.
final class ConsumerContext: LibrdkafkaCallbackContext, @unchecked Sendable {
    let assignment = Mutex(Set<TopicPartition>())

    /// Commits stored offsets synchronously; "nothing to commit" is success. Blocks the caller.
    static func commitStoredOffsets(_ rk: OpaquePointer) -> KafkaError? {
        let err = rd_kafka_commit(rk, nil, 0)
        if err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET {
            return nil
        }
        return KafkaError(err)
    }

    /// A commit that tries again (100 ms apart) while the group coordinator answers that a
    /// rebalance is in progress; used when partitions are revoked, where a lost commit means
    /// their next owner re-reads records. Blocks the poll queue for at most `retries` × 100 ms.
    static func commitStoredOffsets(_ rk: OpaquePointer, retries: Int) -> KafkaError? {
        var failure = commitStoredOffsets(rk)
        var attempt = 0
        while let current = failure, attempt < retries,
              current.code == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS.rawValue || current.code == RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue
                || current.code == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS.rawValue || current.code == RD_KAFKA_RESP_ERR__TRANSPORT.rawValue {
            attempt += 1
            Thread.sleep(forTimeInterval: 0.1)
            failure = commitStoredOffsets(rk)
        }
        return failure
    }

    /// Runs inside rd_kafka_consumer_poll / rd_kafka_consumer_close, i.e. on the poll queue.
    func rebalance(
        _ rk: OpaquePointer,
        _ event: rd_kafka_resp_err_t,
        _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
    ) {
        let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
        let changed = TopicPartition.entries(of: partitions).map(TopicPartition.init)
        switch event {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, partitions) { rd_kafka_error_destroy(error) }
            } else {
                rd_kafka_assign(rk, partitions)
            }
            assignment.withLock { cooperative ? $0.formUnion(changed) : ($0 = Set(changed)) }
            logger.debug("kafka partitions assigned", metadata: [
                "kafka.partitions": "\(Self.describe(changed))",
                "kafka.rebalance": "\(cooperative ? "incremental" : "eager")",
            ])

        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            // Commit what was finished before the partitions move, so the next owner does not redo it.
            if let failure = Self.commitStoredOffsets(rk, retries: 5) {
                logger.debug("kafka commit on revoke failed", metadata: ["kafka.error": "\(failure.name)"])
            }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, partitions) { rd_kafka_error_destroy(error) }
            } else {
                rd_kafka_assign(rk, nil)
            }
            assignment.withLock { cooperative ? $0.subtract(changed) : $0.removeAll() }
            logger.debug("kafka partitions revoked", metadata: [
                "kafka.partitions": "\(Self.describe(changed))",
                "kafka.rebalance": "\(cooperative ? "incremental" : "eager")",
            ])

        default:
            logger.debug("kafka rebalance failed", metadata: ["kafka.error": "\(KafkaError(event).name)"])
            rd_kafka_assign(rk, nil)
            assignment.withLock { $0.removeAll() }
        }
    }

    private static func describe(_ partitions: [TopicPartition]) -> String {
        partitions.map { "\($0.topic)[\($0.partition)]" }.sorted().joined(separator: ",")
    }
}

private let rebalanceCallback: @convention(c) (
    OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
) -> Void = { rk, event, partitions, opaque in
    guard let rk, let opaque else { return }
    guard let context = LibrdkafkaCallbackContext.from(opaque) as? ConsumerContext else { return }
    context.rebalance(rk, event, partitions)
}
