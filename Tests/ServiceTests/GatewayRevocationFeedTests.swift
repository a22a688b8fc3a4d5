import Contracts
import Foundation
import Kafka
import Logging
import Platform
import ServiceLifecycle
import Testing
@testable import Gateway

/// The revocation feed against librdkafka's mock cluster, in process, with a real producer and
/// the feed's real consumer. `REVOCATION_TEST_LOG_LEVEL=debug` shows their logs.
@Suite(.serialized) struct GatewayRevocationFeedTests {
    static let logger: Logger = {
        var logger = Logger(label: "gateway-revocation-tests") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = ProcessInfo.processInfo.environment["REVOCATION_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        return logger
    }()

    var logger: Logger { Self.logger }

    func revocation(_ user: UUID, sessions: [UUID] = [], notBefore: Date = Date(), kept: UUID? = nil, reason: String = "logout-all") throws -> CloudEvent {
        try CloudEvent.json(
            type: EventTypes.sessionsRevoked, source: "/identity", subject: "users/\(user.uuidString.lowercased())",
            payload: SessionsRevokedV1(userId: user, sessionIds: sessions, notBefore: notBefore, keptSessionId: kept, reason: reason))
    }

    func send(_ event: CloudEvent, key user: UUID, with producer: KafkaProducer) async throws {
        _ = try await producer.send(topic: Topics.identitySessions, key: Array(user.uuidString.lowercased().utf8),
                                    value: event.data, headers: event.kafkaHeaders)
    }

    func isRevoked(_ list: RevocationList, user: UUID, session: UUID? = nil, issuedAt: Date) -> Bool {
        list.isRevoked(subject: user.uuidString.lowercased(), sessionId: session?.uuidString.lowercased(),
                       issuedAt: Int64(issuedAt.timeIntervalSince1970))
    }

    @Test func revocationsPresentAtStartAreAppliedBeforeTheFeedCountsAsCaughtUpAndLaterOnesFollow() async throws {
        try await withinLimit(.seconds(90)) {
            let cluster = try MockKafkaCluster(logger: logger)
            try cluster.createTopic(Topics.identitySessions, partitions: 3)
            let producer = try KafkaProducer(
                configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, clientId: "identity"), logger: logger)
            let now = Date()
            let users = (0..<12).map { _ in UUID() }
            let sessions = users.map { _ in UUID() }
            let poisoned = UUID()
            let stale = UUID()
            try await runServices([producer]) {
                // Before the gateway starts: a revocation per user (spread over the partitions),
                // an unreadable record and another event type ahead of a valid revocation on the
                // same partition, and a revocation too old to matter.
                for (user, session) in zip(users, sessions) {
                    try await send(try revocation(user, sessions: [session], notBefore: now - 5), key: user, with: producer)
                }
                _ = try await producer.send(topic: Topics.identitySessions, key: Array(poisoned.uuidString.lowercased().utf8),
                                            value: Array("{not json".utf8), headers: [KafkaHeader(key: "ce_type", value: Array("x".utf8))])
                let other = try CloudEvent.json(type: EventTypes.userRegistered, source: "/identity", subject: nil,
                                                payload: ["userId": poisoned.uuidString])
                try await send(other, key: poisoned, with: producer)
                try await send(try revocation(poisoned, notBefore: now - 5, reason: "suspended"), key: poisoned, with: producer)
                try await send(try revocation(stale, sessions: [stale], notBefore: now - 18 * 60), key: stale, with: producer)

                let feed = try RevocationFeed(
                    configuration: RevocationFeed.kafkaConfiguration(bootstrapServers: cluster.bootstrapServers),
                    list: RevocationList(), logger: logger)
                #expect(!feed.isCaughtUp)
                try await runServices([feed]) {
                    try await eventually(within: .seconds(30)) { feed.isCaughtUp }
                    // Everything that was there at the start is in the list the moment readiness turns ok.
                    for (user, session) in zip(users, sessions) {
                        #expect(isRevoked(feed.list, user: user, session: session, issuedAt: now))
                        #expect(isRevoked(feed.list, user: user, issuedAt: now - 10))
                        #expect(!isRevoked(feed.list, user: user, session: UUID(), issuedAt: now))
                    }
                    #expect(isRevoked(feed.list, user: poisoned, issuedAt: now - 10), "records after an unreadable one are applied")
                    #expect(!isRevoked(feed.list, user: stale, session: stale, issuedAt: now - 20 * 60), "too old to matter: not kept")
                    #expect(feed.list.entryCount == users.count * 2 + 1)

                    // A revocation published while the gateway runs takes effect without a restart.
                    let later = UUID()
                    let laterSession = UUID()
                    #expect(!isRevoked(feed.list, user: later, session: laterSession, issuedAt: now))
                    try await send(try revocation(later, sessions: [laterSession], notBefore: now, reason: "password-change"), key: later, with: producer)
                    try await eventually(within: .seconds(15)) { isRevoked(feed.list, user: later, session: laterSession, issuedAt: now) }
                    #expect(feed.isCaughtUp)
                }
            }
        }
    }

    @Test func anEmptyTopicIsCaughtUpAtOnce() async throws {
        try await withinLimit(.seconds(60)) {
            let cluster = try MockKafkaCluster(logger: logger)
            try cluster.createTopic(Topics.identitySessions, partitions: 3)
            let feed = try RevocationFeed(
                configuration: RevocationFeed.kafkaConfiguration(bootstrapServers: cluster.bootstrapServers),
                list: RevocationList(), logger: logger)
            try await runServices([feed]) {
                try await eventually(within: .seconds(10)) { feed.isCaughtUp }
                #expect(feed.list.entryCount == 0)
            }
        }
    }

    @Test func withoutABrokerTheFeedIsNotCaughtUpAndStillStopsOnShutdown() async throws {
        try await withinLimit(.seconds(60)) {
            let feed = try RevocationFeed(
                configuration: RevocationFeed.kafkaConfiguration(bootstrapServers: "127.0.0.1:1"),
                list: RevocationList(), logger: logger)
            let started = ContinuousClock.now
            try await runServices([feed]) {
                try await Task.sleep(for: .seconds(3))
                #expect(!feed.isCaughtUp)
            }
            #expect(ContinuousClock.now - started < .seconds(20), "graceful shutdown does not wait for the broker")
        }
    }

    @Test func aRevokedTokenIsRefusedLikeAnInvalidOneAndReadinessWaitsForTheFeed() async throws {
        let harness = try GatewayAuthenticationHarness()
        let list = RevocationList()
        let caughtUp = ManualFlag()
        let responder = try harness.core(revocations: RevocationCheck(list: list, isCaughtUp: { caughtUp.value }))
        let user = UUID()
        let session = UUID()
        let now = Date()
        let token = try harness.token(subject: user, session: session, issuedAt: now - 30)

        #expect(try await responder.authenticate(harness.request(bearer: token), logger: logger) == user.uuidString.lowercased())

        list.apply(SessionsRevokedV1(userId: user, sessionIds: [session], notBefore: now, keptSessionId: nil, reason: "logout-all"))
        let refusal = try await problemThrown { try await responder.authenticate(harness.request(bearer: token), logger: logger) }
        let invalid = try await problemThrown { try await responder.authenticate(harness.request(bearer: token + "x"), logger: logger) }
        #expect(refusal.status == .unauthorized)
        #expect(refusal.headers[.wwwAuthenticate] == "Bearer error=\"invalid_token\"")
        #expect(refusal == invalid, "a revoked token looks exactly like an invalid one")

        let fresh = try harness.token(subject: user, session: UUID(), issuedAt: now + 1)
        #expect(try await responder.authenticate(harness.request(bearer: fresh), logger: logger) == user.uuidString.lowercased(),
                "a token issued after the revocation, in a new session, is accepted")

        #expect(responder.readiness().checks["revocations"] == "fail")
        #expect(!responder.readiness().ready)
        caughtUp.value = true
        #expect(responder.readiness().checks["revocations"] == "ok")

        let disabled = try harness.core(revocations: nil)
        #expect(disabled.readiness().checks["revocations"] == nil, "no Kafka configured: no revocations check")
        #expect(try await disabled.authenticate(harness.request(bearer: token), logger: logger) == user.uuidString.lowercased())
    }

    func problemThrown(_ body: () async throws -> String) async throws -> Problem {
        do {
            _ = try await body()
        } catch let problem as Problem {
            return problem
        }
        Issue.record("the token was accepted")
        throw CancellationError()
    }
}

/// Runs `services` in a ServiceGroup around `body`, then shuts them down gracefully (as SIGTERM
/// would) and waits until they stopped.
func runServices<Result: Sendable>(_ services: [any Service], _ body: () async throws -> Result) async throws -> Result {
    let serviceGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: GatewayRevocationFeedTests.logger))
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

struct TimeLimitExceeded: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "did not finish within \(limit)" }
}

/// Runs `body`, cancelling it and failing after `limit`, so a broken client cannot hang the suite.
func withinLimit<Result: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> Result) async throws -> Result {
    try await withThrowingTaskGroup(of: Result.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimeLimitExceeded(limit: limit)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Waits until `condition` holds, checking every 20 ms; fails after `limit`.
func eventually(within limit: Duration, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TimeLimitExceeded(limit: limit) }
        try await Task.sleep(for: .milliseconds(20))
    }
}
