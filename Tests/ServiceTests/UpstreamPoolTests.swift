import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import Testing
@testable import Gateway
@testable import Platform

@Suite struct UpstreamPoolTests {
    static let a = URL(string: "http://127.0.0.1:9001")!
    static let b = URL(string: "http://127.0.0.1:9002")!
    static let c = URL(string: "http://127.0.0.1:9003")!

    func pool(_ clock: ManualClock, urls: [URL] = [a, b, c], policy: UpstreamPool.Policy = UpstreamPool.Policy(),
              name: String = "orders") throws -> UpstreamPool {
        try UpstreamPool(name: name, urls: urls, policy: policy, now: { clock.now.timeIntervalSince1970 }, logger: Self.logger)
    }

    func picks(_ pool: UpstreamPool, _ count: Int) -> [URL] {
        (0..<count).map { _ in pool.next().url }
    }

    func clock() -> ManualClock {
        ManualClock(Date(timeIntervalSince1970: 1_000))
    }

    /// Opens `endpoint`'s circuit with as many 503 answers as its policy needs (503s do not eject).
    func openCircuit(of endpoint: UpstreamPool.Endpoint, in pool: UpstreamPool) throws {
        for _ in 0..<pool.policy.breaker.consecutiveFailuresToOpen {
            let permit = try #require(endpoint.breaker.acquire())
            pool.record(endpoint, .answered(status: 503), permit: permit)
        }
        #expect(endpoint.breaker.phase == .open)
    }

    // MARK: Choosing an endpoint

    @Test func anUpstreamNeedsAtLeastOneDistinctAddress() {
        #expect(throws: UpstreamPool.ConfigurationError.noEndpoints(upstream: "orders")) {
            try UpstreamPool(name: "orders", urls: [])
        }
        #expect(throws: UpstreamPool.ConfigurationError.duplicateEndpoint(upstream: "orders", url: "http://127.0.0.1:9001")) {
            try UpstreamPool(name: "orders", urls: [Self.a, Self.b, Self.a])
        }
    }

    @Test func requestsGoRoundRobin() throws {
        let pool = try pool(clock())
        #expect(picks(pool, 7) == [Self.a, Self.b, Self.c, Self.a, Self.b, Self.c, Self.a])
        let single = try self.pool(clock(), urls: [Self.a])
        #expect(picks(single, 3) == [Self.a, Self.a, Self.a])
    }

    @Test func threeConsecutiveConnectionFailuresOrTimeoutsEjectAnEndpointForTheCoolDown() throws {
        let clock = clock()
        let pool = try pool(clock)
        let b = pool.endpoints[1]
        pool.record(b, .connectionFailed)
        pool.record(b, .timedOut)
        #expect(pool.status()[1].isUp, "two failures are not enough")
        pool.record(b, .connectionFailed)
        #expect(pool.status()[1] == .init(url: Self.b, ejectedUntil: 1_010, passesHealthCheck: true, circuit: .closed))
        #expect(picks(pool, 4) == [Self.a, Self.c, Self.a, Self.c])

        clock.advance(seconds: 9.9)
        #expect(picks(pool, 2) == [Self.a, Self.c])
        clock.advance(seconds: 0.1)
        #expect(pool.status()[1].isUp, "readmitted after 10 s")
        #expect(picks(pool, 3) == [Self.a, Self.b, Self.c])
        // It starts again from a clean count.
        pool.record(b, .connectionFailed)
        pool.record(b, .connectionFailed)
        #expect(pool.status()[1].isUp)
    }

    @Test func anyAnswerResetsTheFailureCountAndOtherOutcomesLeaveIt() throws {
        let pool = try pool(clock())
        let a = pool.endpoints[0]
        pool.record(a, .connectionFailed)
        pool.record(a, .connectionFailed)
        pool.record(a, .answered(status: 503))
        pool.record(a, .connectionFailed)
        pool.record(a, .connectionFailed)
        #expect(pool.status()[0].isUp, "an answer, even a 503, shows the endpoint is reachable")
        pool.record(a, .interrupted)
        pool.record(a, .cancelled)
        #expect(pool.status()[0].isUp, "neither counts")
        pool.record(a, .timedOut)
        #expect(!pool.status()[0].isUp, "nor resets: this is the third in a row")
    }

    @Test func whenEveryEndpointIsOutTheOneOutLongestIsStillTried() throws {
        // An ejection or failed check may be stale, and trying beats a certain 503.
        let clock = clock()
        let pool = try pool(clock)
        for index in [2, 0, 1] {
            for _ in 0..<3 { pool.record(pool.endpoints[index], .connectionFailed) }
            clock.advance(seconds: 1)
        }
        #expect(pool.status().allSatisfy { !$0.isUp })
        #expect(picks(pool, 3) == [Self.c, Self.c, Self.c], "c was ejected first")
        if case .granted(let endpoint, _) = pool.acquire() {
            #expect(endpoint.url == Self.c)
        } else {
            Issue.record("refused while a circuit admits requests")
        }
        clock.advance(seconds: 7.5)  // c's ejection ran out
        #expect(pool.status()[2].isUp)
        #expect(picks(pool, 2) == [Self.c, Self.c])
        clock.advance(seconds: 1)  // and a's
        #expect(picks(pool, 4) == [Self.a, Self.c, Self.a, Self.c])
    }

    @Test func anEndpointWhoseCircuitIsOpenIsSkipped() throws {
        let clock = clock()
        let pool = try pool(clock)
        let b = pool.endpoints[1]
        try openCircuit(of: b, in: pool)
        #expect(pool.status()[1].isUp, "a 503 opens the circuit but does not eject")
        #expect(pool.status()[1].circuit == .open)
        #expect(picks(pool, 4) == [Self.a, Self.c, Self.a, Self.c])
        clock.advance(seconds: 10)
        #expect(pool.status()[1].circuit == .halfOpen)
        #expect(picks(pool, 3) == [Self.a, Self.b, Self.c], "half-open takes a probe")
    }

    @Test func anOutOfRotationEndpointWithAWorkingCircuitBeatsAnOpenCircuit() throws {
        let clock = clock()
        let pool = try pool(clock, urls: [Self.a, Self.b])
        try openCircuit(of: pool.endpoints[0], in: pool)
        for _ in 0..<3 { pool.record(pool.endpoints[1], .connectionFailed) }
        #expect(picks(pool, 2) == [Self.b, Self.b])
    }

    @Test func whenEveryCircuitIsOpenTheCallerIsToldWhenToComeBack() throws {
        let clock = clock()
        let pool = try pool(clock, urls: [Self.a, Self.b])
        try openCircuit(of: pool.endpoints[1], in: pool)
        clock.advance(seconds: 4)
        try openCircuit(of: pool.endpoints[0], in: pool)
        #expect(picks(pool, 2) == [Self.b, Self.b], "b's circuit reopens first")
        guard case .refused(let retryAfter) = pool.acquire() else {
            Issue.record("granted while every circuit is open")
            return
        }
        #expect(retryAfter == 6)
        clock.advance(seconds: 6)
        guard case .granted(let endpoint, let permit) = pool.acquire() else {
            Issue.record("refused after b half-opened")
            return
        }
        #expect(endpoint.url == Self.b)
        #expect(permit.isProbe)
    }

    @Test func acquireMovesOnWhenACircuitRefusesAtTheLastMoment() throws {
        let clock = clock()
        let pool = try pool(clock, urls: [Self.a, Self.b])
        try openCircuit(of: pool.endpoints[0], in: pool)
        clock.advance(seconds: 10)
        // a is half-open with one probe slot: the first request probes it, the next go to b.
        guard case .granted(let first, let probe) = pool.acquire() else { Issue.record("refused"); return }
        #expect(first.url == Self.a)
        #expect(probe.isProbe)
        for _ in 0..<3 {
            guard case .granted(let endpoint, let permit) = pool.acquire() else { Issue.record("refused"); return }
            #expect(endpoint.url == Self.b)
            #expect(!permit.isProbe)
            pool.record(endpoint, .answered(status: 200), permit: permit)
        }
        pool.record(first, .answered(status: 200), permit: probe)
        #expect(pool.endpoints[0].breaker.state == .halfOpen(probesInFlight: 0, successes: 1, openedFor: 10))
    }

    @Test func aRetryAvoidsTheEndpointThatFailedWhenThereIsAnother() throws {
        let pool = try pool(clock())
        let a = pool.endpoints[0]
        #expect(pool.next(avoiding: a).url != Self.a)
        #expect((0..<6).allSatisfy { _ in pool.next(avoiding: a).url != Self.a })
        if case .granted(let endpoint, _) = pool.acquire(avoiding: a) {
            #expect(endpoint.url != Self.a)
        } else {
            Issue.record("refused")
        }
        // Even an ejected endpoint beats the one that just failed...
        let two = try self.pool(clock(), urls: [Self.a, Self.b])
        for _ in 0..<3 { two.record(two.endpoints[1], .connectionFailed) }
        #expect(two.next(avoiding: two.endpoints[0]).url == Self.b)
        // ...and with a single endpoint the retry goes to it again.
        let single = try self.pool(clock(), urls: [Self.a])
        #expect(single.next(avoiding: single.endpoints[0]).url == Self.a)
    }

    @Test func anEndpointOfAnotherPoolIsIgnored() throws {
        let pool = try pool(clock())
        let other = try self.pool(clock())
        for _ in 0..<3 { pool.record(other.endpoints[0], .connectionFailed) }
        other.recordCheck(other.endpoints[0], passed: false)
        other.recordCheck(other.endpoints[0], passed: false)
        #expect(pool.status().allSatisfy { $0.isUp })
        #expect(!other.status()[0].isUp)
    }

    // MARK: Retries

    struct RetryCase: Sendable, CustomTestStringConvertible {
        var method: HTTPRequest.Method
        var failure: UpstreamOutcome
        var attempt: Int
        var secondsLeft: Int64
        var retried: Bool

        init(_ method: HTTPRequest.Method, _ failure: UpstreamOutcome, attempt: Int, secondsLeft: Int64, _ retried: Bool) {
            (self.method, self.failure, self.attempt, self.secondsLeft, self.retried) = (method, failure, attempt, secondsLeft, retried)
        }

        var testDescription: String { "\(method) after \(failure), attempt \(attempt), \(secondsLeft) s left: \(retried ? "retry" : "no retry")" }
    }

    static let retryCases: [RetryCase] = [
        RetryCase(.get, .connectionFailed, attempt: 1, secondsLeft: 5, true),
        RetryCase(.head, .connectionFailed, attempt: 1, secondsLeft: 5, true),
        RetryCase(.options, .connectionFailed, attempt: 1, secondsLeft: 5, true),
        RetryCase(.put, .connectionFailed, attempt: 1, secondsLeft: 5, true),
        RetryCase(.delete, .connectionFailed, attempt: 1, secondsLeft: 5, true),
        // Not idempotent: a second try could do it twice.
        RetryCase(.post, .connectionFailed, attempt: 1, secondsLeft: 5, false),
        RetryCase(.patch, .connectionFailed, attempt: 1, secondsLeft: 5, false),
        // The request may have reached the upstream, or it answered.
        RetryCase(.get, .timedOut, attempt: 1, secondsLeft: 5, false),
        RetryCase(.get, .interrupted, attempt: 1, secondsLeft: 5, false),
        RetryCase(.get, .answered(status: 503), attempt: 1, secondsLeft: 5, false),
        RetryCase(.get, .answered(status: 502), attempt: 1, secondsLeft: 5, false),
        RetryCase(.get, .cancelled, attempt: 1, secondsLeft: 5, false),
        // One retry at most.
        RetryCase(.get, .connectionFailed, attempt: 2, secondsLeft: 5, false),
        RetryCase(.put, .connectionFailed, attempt: 3, secondsLeft: 5, false),
        // Only before the route's deadline.
        RetryCase(.get, .connectionFailed, attempt: 1, secondsLeft: 0, false),
        RetryCase(.get, .connectionFailed, attempt: 1, secondsLeft: -1, false),
    ]

    @Test(arguments: retryCases)
    func retryRule(_ rule: RetryCase) {
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
        let deadline = now + .seconds(rule.secondsLeft)
        #expect(UpstreamPool.shouldRetry(method: rule.method, failure: rule.failure, attempt: rule.attempt, deadline: deadline, now: now) == rule.retried)
    }

    // MARK: Active health

    /// Answers each base URL's check as told; unknown URLs pass.
    final class ScriptedProbe: Sendable {
        private let answers = Mutex<[URL: Bool]>([:])
        private let asked = Mutex<[URL]>([])

        subscript(url: URL) -> Bool {
            get { answers.withLock { $0[url] ?? true } }
            set { answers.withLock { $0[url] = newValue } }
        }

        var askedURLs: [URL] { asked.withLock { $0 } }

        func probe(_ url: URL) async -> Bool {
            asked.withLock { $0.append(url) }
            return self[url]
        }
    }

    @Test func twoFailedChecksTakeAnEndpointOutAndOnePassedCheckBringsItBack() async throws {
        let clock = clock()
        let pool = try pool(clock)
        let script = ScriptedProbe()
        let checker = ActiveHealthChecker(pools: [pool], probe: script.probe)
        script[Self.b] = false
        await checker.checkAll()
        #expect(Set(script.askedURLs) == [Self.a, Self.b, Self.c])
        #expect(pool.status()[1].isUp, "one failed check is not enough")
        clock.advance(seconds: 5)
        await checker.checkAll()
        #expect(pool.status()[1] == .init(url: Self.b, ejectedUntil: nil, passesHealthCheck: false, circuit: .closed))
        #expect(picks(pool, 4) == [Self.a, Self.c, Self.a, Self.c])

        script[Self.b] = true
        await checker.checkAll()
        #expect(pool.status()[1].isUp)
        #expect(picks(pool, 3) == [Self.a, Self.b, Self.c])
    }

    @Test func aPassedCheckBetweenFailedOnesKeepsTheEndpointIn() throws {
        let pool = try pool(clock())
        let a = pool.endpoints[0]
        pool.recordCheck(a, passed: false)
        pool.recordCheck(a, passed: true)
        pool.recordCheck(a, passed: false)
        #expect(pool.status()[0].isUp)
        pool.recordCheck(a, passed: false)
        #expect(!pool.status()[0].isUp)
    }

    @Test func anEndpointFailingItsChecksIsStillTriedWhenNoOtherIsUp() throws {
        let clock = clock()
        let pool = try pool(clock, urls: [Self.a, Self.b])
        for _ in 0..<2 { pool.recordCheck(pool.endpoints[1], passed: false) }
        clock.advance(seconds: 1)
        for _ in 0..<2 { pool.recordCheck(pool.endpoints[0], passed: false) }
        #expect(picks(pool, 2) == [Self.b, Self.b], "b has been out longest")
    }

    @Test func aCheckThatDoesNotAnswerInTimeFails() async throws {
        let pool = try pool(clock(), urls: [Self.a])
        let checker = ActiveHealthChecker(pools: [pool], timeout: .milliseconds(20)) { _ in
            try? await Task.sleep(for: .seconds(30))
            return true
        }
        try await withinLimit(.seconds(5)) {
            await checker.checkAll()
            await checker.checkAll()
        }
        #expect(!pool.status()[0].isUp)
    }

    @Test func theCheckerAsksEachEndpointsReadinessOverHTTP() async throws {
        let ready = ManualFlag()
        ready.value = true
        let router = Router()
        router.get("/health/ready") { _, _ -> Response in
            Response(status: ready.value ? .ok : .serviceUnavailable)
        }
        let port = Mutex<Int?>(nil)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } },
                              logger: Self.logger)
        try await withinLimit(.seconds(30)) {
            try await runServices([app]) {
                try await eventually(within: .seconds(10)) { port.withLock { $0 } != nil }
                let live = URL(string: "http://127.0.0.1:\(port.withLock { $0 }!)")!
                // Nothing listens on port 1: refused at once.
                let pool = try UpstreamPool(name: "listings", urls: [live, URL(string: "http://127.0.0.1:1")!], logger: Self.logger)
                // As the gateway configures its client: a refused connection fails at once.
                var configuration = HTTPClient.Configuration()
                configuration.connectionPool.retryConnectionEstablishment = false
                let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
                let checker = ActiveHealthChecker(pools: [pool], interval: .milliseconds(20), timeout: .seconds(1),
                                                  httpClient: client, logger: Self.logger)
                do {
                    try await runServices([checker]) {
                        try await eventually(within: .seconds(10)) { pool.status().map(\.passesHealthCheck) == [true, false] }
                        ready.value = false
                        try await eventually(within: .seconds(10)) { !pool.status()[0].passesHealthCheck }
                        ready.value = true
                        try await eventually(within: .seconds(10)) { pool.status()[0].passesHealthCheck }
                    }
                } catch {
                    try await client.shutdown()
                    throw error
                }
                try await client.shutdown()
            }
        }
    }

    @Test func readinessIsAskedUnderTheBaseURL() {
        #expect(ActiveHealthChecker.readinessURL(for: URL(string: "http://10.0.0.7:8084")!) == "http://10.0.0.7:8084/health/ready")
        #expect(ActiveHealthChecker.readinessURL(for: URL(string: "http://10.0.0.7:8084/orders/")!) == "http://10.0.0.7:8084/orders/health/ready")
    }

    // MARK: Metrics

    @Test func eachEndpointsHealthAndCircuitAreGauges() async throws {
        let registry = MetricsSetup.bootstrap()
        let clock = clock()
        let upstream = "metrics-\(UUID().uuidString.prefix(8).lowercased())"
        let pool = try pool(clock, urls: [Self.a, Self.b], name: upstream)
        func sample(_ metric: String, _ url: URL) -> Double? {
            let prefix = "\(metric){upstream=\"\(upstream)\",endpoint=\"\(url.absoluteString)\"} "
            return registry.emitToString().split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
        }
        #expect(sample(UpstreamPool.endpointUpMetric, Self.a) == 1)
        #expect(sample(UpstreamPool.circuitStateMetric, Self.a) == 0)

        for _ in 0..<3 { pool.record(pool.endpoints[0], .connectionFailed) }
        try openCircuit(of: pool.endpoints[1], in: pool)
        #expect(sample(UpstreamPool.endpointUpMetric, Self.a) == 0)
        #expect(sample(UpstreamPool.endpointUpMetric, Self.b) == 1)
        #expect(sample(UpstreamPool.circuitStateMetric, Self.b) == 1)

        clock.advance(seconds: 10)
        pool.refreshMetrics()
        #expect(sample(UpstreamPool.endpointUpMetric, Self.a) == 1, "readmitted")
        #expect(sample(UpstreamPool.circuitStateMetric, Self.b) == 2, "half-open")
    }

    static let logger: Logger = {
        var logger = Logger(label: "upstream-pool-tests")
        logger.logLevel = .critical
        return logger
    }()
}
