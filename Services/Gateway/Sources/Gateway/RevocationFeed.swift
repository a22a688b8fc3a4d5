import Contracts
import Foundation
import Kafka
import Logging
import Metrics
import NIOConcurrencyHelpers
import Platform
import ServiceLifecycle

/// Reads identity's session revocations (`identity.sessions.v1`) into a ``RevocationList``.
///
/// Every replica reads the whole topic itself: the consumer group is unique to the process, starts
/// at the earliest offset and never commits, so a restarted gateway reads everything again (the
/// gateway keeps no state). ``isCaughtUp`` turns true once every record that existed when it
/// started has been read; until then the gateway is not ready, or a fresh replica would accept
/// tokens revoked before it started.
public final class RevocationFeed: Service, Sendable {
    public let list: RevocationList
    let consumer: KafkaConsumer
    let topic: String
    let logger: Logger
    /// How often expired entries are swept (besides on insert).
    let pruneInterval: Duration
    /// How often, while catching up, the partitions' starts are asked again (retention may have
    /// deleted records that were there at the start; they can no longer be read).
    let recheckInterval: Duration
    /// Nil until the offsets present at the start are known.
    private let catchUp = NIOLockedValueBox<CatchUp?>(nil)
    private let applied = Counter(label: "gateway_revocations_applied_total")
    private let entries = Gauge(label: "gateway_revocation_entries")

    /// - Parameters:
    ///   - configuration: Where the brokers are; see ``kafkaConfiguration(bootstrapServers:fetchWaitMaxMilliseconds:)``.
    ///   - groupId: Unique per process by default; tests may name one.
    public init(configuration: KafkaConfiguration, list: RevocationList, topic: String = Topics.identitySessions,
                groupId: String = RevocationFeed.uniqueGroupId(), pruneInterval: Duration = .seconds(30),
                recheckInterval: Duration = .seconds(5), logger: Logger) throws {
        self.list = list
        self.topic = topic
        self.logger = logger
        self.pruneInterval = pruneInterval
        self.recheckInterval = recheckInterval
        self.consumer = try KafkaConsumer(configuration: configuration, groupId: groupId, topics: [topic], logger: logger)
    }

    /// Consumer settings: from the earliest record, nothing ever committed (the group dies with the process).
    /// `security` adds the TLS/SASL settings (``KafkaSecurity``).
    public static func kafkaConfiguration(bootstrapServers: String, fetchWaitMaxMilliseconds: Int = 100,
                                          security: [String: String] = [:]) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: bootstrapServers, clientId: "gateway-revocations", properties: security.merging([
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "fetch.wait.max.ms": String(fetchWaitMaxMilliseconds),
        ]) { _, own in own })
    }

    /// `gateway-revocations-<host>-<random>`: no two processes share a group, so each reads every partition.
    public static func uniqueGroupId() -> String {
        let host = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        return "gateway-revocations-\(host.isEmpty ? "host" : host)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// Whether every revocation that existed at the start has been read.
    public var isCaughtUp: Bool {
        catchUp.withLockedValue { $0?.isComplete ?? false }
    }

    public func run() async throws {
        entries.record(list.entryCount)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.consumer.run() }
            group.addTask {
                try await cancelWhenGracefulShutdown {
                    do {
                        try await self.consume()
                    } catch is CancellationError {
                    } catch {
                        // The gateway must not keep accepting tokens it can no longer check: it stops.
                        self.logger.error("revocation feed stopped", metadata: ["error": "\(error)"])
                        throw error
                    }
                }
            }
            group.addTask { await self.maintain() }
            // The consumer (closed on graceful shutdown) or the reader finishes first; either way it is over.
            _ = try await group.next()
            group.cancelAll()
        }
    }

    func consume() async throws {
        let ranges = try await startingRanges()
        let complete = catchUp.withLockedValue { state in
            state = CatchUp(ranges: ranges)
            return state!.isComplete
        }
        logger.debug("revocation feed started", metadata: ["kafka.topic": "\(topic)", "kafka.offset_ranges": "\(ranges)"])
        if complete { reportCaughtUp() }
        while !Task.isCancelled {
            let batch = try await consumer.nextBatch(maximum: 500)
            if batch.isEmpty { return }
            for message in batch { handle(message) }
            let (wasComplete, isComplete) = catchUp.withLockedValue { state in
                let before = state?.isComplete ?? false
                for message in batch { state?.consumed(partition: message.partition, offset: message.offset) }
                return (before, state?.isComplete ?? false)
            }
            entries.record(list.entryCount)
            if isComplete && !wasComplete { reportCaughtUp() }
        }
    }

    /// Applies one record: a `sessions_revoked` event not older than the list's retention.
    /// Other event types are skipped; an unreadable record is logged (never its payload) and skipped.
    func handle(_ message: KafkaMessage) {
        let metadata: Logger.Metadata = ["kafka.topic": "\(message.topic)", "kafka.partition": "\(message.partition)", "kafka.offset": "\(message.offset)"]
        let event: CloudEvent
        do {
            event = try CloudEvent(headers: message.headers, value: message.value)
        } catch {
            logger.warning("unreadable revocation record skipped", metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return
        }
        guard event.type == EventTypes.sessionsRevoked else {
            logger.debug("event type skipped", metadata: metadata.merging(["event.type": "\(event.type)"]) { $1 })
            return
        }
        let revocation: SessionsRevokedV1
        do {
            revocation = try event.decode(SessionsRevokedV1.self)
        } catch {
            logger.warning("unreadable revocation record skipped", metadata: metadata.merging(["event.id": "\(event.id)", "error": "invalid payload"]) { $1 })
            return
        }
        if list.apply(revocation) {
            applied.increment()
            logger.debug("revocation applied", metadata: metadata.merging([
                "event.id": "\(event.id)", "user.id": "\(revocation.userId.uuidString.lowercased())", "sessions": "\(revocation.sessionIds.count)",
                "reason": "\(revocation.reason)",
            ]) { $1 })
        }
    }

    /// The offsets present at the start, asked until the brokers answer (the gateway stays not ready meanwhile).
    private func startingRanges() async throws -> [Int32: Range<Int64>] {
        var lastWarning: ContinuousClock.Instant?
        while true {
            do {
                return try await consumer.offsetRanges(topic: topic, timeout: .seconds(2))
            } catch {
                if lastWarning.map({ ContinuousClock.now - $0 >= .seconds(30) }) ?? true {
                    logger.warning("revocations not loaded yet: kafka does not answer", metadata: ["kafka.topic": "\(topic)", "kafka.error": "\(error)"])
                    lastWarning = .now
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Sweeps expired entries and, while catching up, notices partitions whose remaining records were deleted.
    private func maintain() async {
        var lastPrune = ContinuousClock.now
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: min(recheckInterval, pruneInterval))
            } catch {
                return
            }
            if ContinuousClock.now - lastPrune >= pruneInterval {
                entries.record(list.prune())
                lastPrune = .now
            }
            let pending = catchUp.withLockedValue { $0.map { !$0.isComplete } ?? false }
            if pending, let ranges = try? await consumer.offsetRanges(topic: topic, timeout: .seconds(2)) {
                let completed = catchUp.withLockedValue { state in
                    let before = state?.isComplete ?? false
                    state?.startsMoved(ranges)
                    return !before && (state?.isComplete ?? false)
                }
                if completed { reportCaughtUp() }
            }
        }
    }

    private func reportCaughtUp() {
        logger.info("revocations caught up", metadata: ["kafka.topic": "\(topic)", "revocation.entries": "\(list.entryCount)"])
    }
}

/// Whether a reader has read every record that existed when it started: per partition, the
/// record just before the end offset seen at the start (or any later one).
struct CatchUp: Equatable {
    /// Partition → its end offset at the start, for partitions still to be read up to it.
    private(set) var remaining: [Int32: Int64]

    init(ranges: [Int32: Range<Int64>]) {
        remaining = ranges.filter { !$0.value.isEmpty }.mapValues(\.upperBound)
    }

    var isComplete: Bool { remaining.isEmpty }

    mutating func consumed(partition: Int32, offset: Int64) {
        if let end = remaining[partition], offset >= end - 1 { remaining[partition] = nil }
    }

    /// Records before a partition's current start were deleted and will never be read.
    mutating func startsMoved(_ ranges: [Int32: Range<Int64>]) {
        for (partition, end) in remaining {
            if let range = ranges[partition], range.lowerBound >= end { remaining[partition] = nil }
        }
    }
}
