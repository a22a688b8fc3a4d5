import AsyncHTTPClient
import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// The addresses of one named upstream (`identity`, `orders`, ...) and what is known of their
/// health: requests go round-robin to the endpoints in rotation, that is those neither ejected
/// (passive health: consecutive connection failures or timeouts) nor failing their active
/// `/health/ready` check, and whose circuit breaker lets requests through.
///
/// Metrics, per endpoint (create pools after `MetricsSetup.bootstrap()`):
/// - `gateway_upstream_endpoint_up{upstream,endpoint}` (``endpointUpMetric``): 1 in rotation, 0 ejected or failing its check;
/// - `gateway_circuit_state{upstream,endpoint}` (``circuitStateMetric``): 0 closed, 1 open, 2 half-open.
public final class UpstreamPool: Sendable {
    public static let endpointUpMetric = "gateway_upstream_endpoint_up"
    public static let circuitStateMetric = "gateway_circuit_state"

    /// Methods a retry may repeat (RFC 9110 §9.2.2), POST and PATCH excluded.
    public static let idempotentMethods: Set<HTTPRequest.Method> = [.get, .head, .options, .put, .delete]
    /// One try and at most one retry.
    public static let maximumAttempts = 2

    /// When endpoints leave and rejoin the rotation.
    public struct Policy: Sendable, Equatable {
        /// Consecutive connection failures or timeouts that eject an endpoint...
        public var ejectAfterFailures: Int
        /// ...for this many seconds, after which it rejoins.
        public var ejectionSeconds: Double
        /// Consecutive failed `/health/ready` checks that take an endpoint out...
        public var downAfterFailedChecks: Int
        /// ...and passed checks that bring it back.
        public var upAfterPassedChecks: Int
        /// Each endpoint's circuit breaker.
        public var breaker: CircuitBreaker.Policy

        public init(ejectAfterFailures: Int = 3, ejectionSeconds: Double = 10, downAfterFailedChecks: Int = 2,
                    upAfterPassedChecks: Int = 1, breaker: CircuitBreaker.Policy = CircuitBreaker.Policy()) {
            self.ejectAfterFailures = max(1, ejectAfterFailures)
            self.ejectionSeconds = max(0, ejectionSeconds)
            self.downAfterFailedChecks = max(1, downAfterFailedChecks)
            self.upAfterPassedChecks = max(1, upAfterPassedChecks)
            self.breaker = breaker
        }
    }

    /// One address of the upstream, with its own circuit breaker.
    public final class Endpoint: Sendable, CustomStringConvertible {
        public let url: URL
        /// `host:port`: the key of its kept-alive connections and the `Host` sent to it.
        public let address: String
        public let breaker: CircuitBreaker
        /// Position in ``UpstreamPool/endpoints``.
        public let index: Int
        fileprivate let upGauge: Gauge
        fileprivate let circuitGauge: Gauge

        fileprivate init(url: URL, index: Int, upstream: String, policy: CircuitBreaker.Policy, now: @escaping @Sendable () -> Double, logger: Logger) {
            let dimensions = [("upstream", upstream), ("endpoint", url.absoluteString)]
            let upGauge = Gauge(label: UpstreamPool.endpointUpMetric, dimensions: dimensions)
            let circuitGauge = Gauge(label: UpstreamPool.circuitStateMetric, dimensions: dimensions)
            self.url = url
            self.address = "\(url.host ?? "127.0.0.1"):\(url.port ?? 80)"
            self.index = index
            self.upGauge = upGauge
            self.circuitGauge = circuitGauge
            self.breaker = CircuitBreaker(policy: policy, now: now) { phase in
                circuitGauge.record(phase.rawValue)
                let metadata: Logger.Metadata = ["upstream": "\(upstream)", "upstream.endpoint": "\(url.absoluteString)", "circuit.state": "\(phase)"]
                switch phase {
                case .open: logger.warning("circuit opened", metadata: metadata)
                case .halfOpen: logger.info("circuit half-open", metadata: metadata)
                case .closed: logger.info("circuit closed", metadata: metadata)
                }
            }
            upGauge.record(1)
            circuitGauge.record(CircuitBreaker.Phase.closed.rawValue)
        }

        public var description: String { url.absoluteString }
    }

    /// What is known of one endpoint (for metrics, readiness and tests).
    public struct EndpointStatus: Sendable, Equatable {
        public var url: URL
        /// Set while passive health keeps it out: when it rejoins.
        public var ejectedUntil: Double?
        /// Its active `/health/ready` check (true until checks say otherwise).
        public var passesHealthCheck: Bool
        public var circuit: CircuitBreaker.Phase

        /// In rotation as far as health goes (the circuit is separate).
        public var isUp: Bool { ejectedUntil == nil && passesHealthCheck }
    }

    /// What ``acquire(avoiding:)`` gives.
    public enum Acquisition: Sendable {
        /// Send the request to `endpoint`, then ``record(_:_:permit:)`` its outcome with `permit`.
        case granted(Endpoint, CircuitBreaker.Permit)
        /// Every endpoint's circuit refuses: answer 503 with this `Retry-After`.
        case refused(retryAfterSeconds: Int)
    }

    public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
        case noEndpoints(upstream: String)
        case duplicateEndpoint(upstream: String, url: String)

        public var description: String {
            switch self {
            case .noEndpoints(let upstream): "upstream \(upstream) needs at least one address"
            case .duplicateEndpoint(let upstream, let url): "upstream \(upstream) lists \(url) twice"
            }
        }
    }

    struct Health {
        var consecutiveFailures = 0
        var ejectedUntil: Double?
        var failedChecks = 0
        var passedChecks = 0
        var passesCheck = true
        /// When it last left the rotation; the fallback prefers the one out the longest.
        var unavailableSince: Double?

        var isUp: Bool { ejectedUntil == nil && passesCheck }
    }

    struct State {
        var health: [Health]
        /// Where the round-robin continues.
        var cursor = 0
    }

    enum Change {
        case ejected(Int, failures: Int)
        case readmitted(Int)
        case markedDown(Int, failedChecks: Int)
        case markedUp(Int)
    }

    public let name: String
    public let endpoints: [Endpoint]
    public let policy: Policy
    private let now: @Sendable () -> Double
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    /// - Parameters:
    ///   - name: The upstream's name, as routes name it.
    ///   - urls: Its base URLs, at least one.
    ///   - now: Seconds on a monotonic clock, shared with the breakers; injected by tests.
    public init(name: String, urls: [URL], policy: Policy = Policy(), now: @escaping @Sendable () -> Double = CircuitBreaker.monotonicSeconds,
                logger: Logger = Logger(label: "gateway.upstreams")) throws {
        guard !urls.isEmpty else { throw ConfigurationError.noEndpoints(upstream: name) }
        var seen: Set<String> = []
        for url in urls where !seen.insert(url.absoluteString).inserted {
            throw ConfigurationError.duplicateEndpoint(upstream: name, url: url.absoluteString)
        }
        self.name = name
        self.policy = policy
        self.now = now
        self.logger = logger
        self.endpoints = urls.enumerated().map { index, url in
            Endpoint(url: url, index: index, upstream: name, policy: policy.breaker, now: now, logger: logger)
        }
        self.state = NIOLockedValueBox(State(health: Array(repeating: Health(), count: urls.count)))
    }

    /// The endpoint for the next request: round-robin over those in rotation whose circuit lets
    /// requests through. When there is none, it still names one rather than nothing, in this
    /// order: the endpoint out of rotation the longest whose circuit admits (its ejection or
    /// failed check is the most likely to be stale, and trying it beats a certain 503), then the
    /// one whose circuit reopens first. `avoiding` (the endpoint a retry follows) comes last.
    public func next(avoiding: Endpoint? = nil) -> Endpoint {
        endpoints[preferenceOrder(avoiding: avoiding)[0]]
    }

    /// An endpoint and its circuit's permit, in ``next(avoiding:)``'s order, trying the next
    /// endpoint when a circuit refuses (one half-open with its probes busy, say).
    public func acquire(avoiding: Endpoint? = nil) -> Acquisition {
        var retryAfter = Int.max
        for index in preferenceOrder(avoiding: avoiding) {
            let endpoint = endpoints[index]
            if let permit = endpoint.breaker.acquire() { return .granted(endpoint, permit) }
            retryAfter = min(retryAfter, endpoint.breaker.retryAfterSeconds)
        }
        return .refused(retryAfterSeconds: retryAfter)
    }

    /// Records how a request to `endpoint` went: passive health, and its circuit when `permit` is given.
    public func record(_ endpoint: Endpoint, _ outcome: UpstreamOutcome, permit: CircuitBreaker.Permit? = nil) {
        permit?.record(outcome)
        guard owns(endpoint) else { return }
        let current = now()
        let changes = state.withLockedValue { state in
            var changes = readmit(&state, at: current)
            var health = state.health[endpoint.index]
            // While ejected it only takes fallback traffic; it gets a clean count when it rejoins.
            guard health.ejectedUntil == nil, outcome != .cancelled, outcome != .interrupted else { return changes }
            if outcome.countsTowardEjection {
                health.consecutiveFailures += 1
                if health.consecutiveFailures >= policy.ejectAfterFailures {
                    changes.append(.ejected(endpoint.index, failures: health.consecutiveFailures))
                    health.ejectedUntil = current + policy.ejectionSeconds
                    health.unavailableSince = current
                    health.consecutiveFailures = 0
                }
            } else {
                health.consecutiveFailures = 0
            }
            state.health[endpoint.index] = health
            updateGauge(endpoint.index, state)
            return changes
        }
        report(changes)
    }

    /// Records an active `/health/ready` check of `endpoint`.
    public func recordCheck(_ endpoint: Endpoint, passed: Bool) {
        guard owns(endpoint) else { return }
        let current = now()
        let changes = state.withLockedValue { state in
            var changes = readmit(&state, at: current)
            var health = state.health[endpoint.index]
            if passed {
                health.failedChecks = 0
                health.passedChecks += 1
                if !health.passesCheck, health.passedChecks >= policy.upAfterPassedChecks {
                    health.passesCheck = true
                    changes.append(.markedUp(endpoint.index))
                }
            } else {
                health.passedChecks = 0
                health.failedChecks += 1
                if health.passesCheck, health.failedChecks >= policy.downAfterFailedChecks {
                    health.passesCheck = false
                    health.unavailableSince = current
                    changes.append(.markedDown(endpoint.index, failedChecks: health.failedChecks))
                }
            }
            state.health[endpoint.index] = health
            updateGauge(endpoint.index, state)
            return changes
        }
        report(changes)
    }

    /// Every endpoint's health and circuit now.
    public func status() -> [EndpointStatus] {
        let circuits = endpoints.map(\.breaker.phase)
        let current = now()
        let (health, changes) = state.withLockedValue { state in
            let changes = readmit(&state, at: current)
            return (state.health, changes)
        }
        report(changes)
        return endpoints.indices.map { index in
            EndpointStatus(url: endpoints[index].url, ejectedUntil: health[index].ejectedUntil,
                           passesHealthCheck: health[index].passesCheck, circuit: circuits[index])
        }
    }

    /// Sets every endpoint's gauges from its state now: rejoins after ejection and circuits whose
    /// open time ran out change state when asked, not on a timer, so the health checker calls this each round.
    public func refreshMetrics() {
        for (endpoint, status) in zip(endpoints, status()) {
            endpoint.upGauge.record(status.isUp ? 1 : 0)
            endpoint.circuitGauge.record(status.circuit.rawValue)
        }
    }

    /// Whether a request that failed with `failure` on attempt number `attempt` (1 for the first)
    /// may be sent again: only an idempotent method, only when the request never reached the
    /// endpoint (so it cannot have had an effect), at most one retry, and only before the route's
    /// `deadline`. The retry goes to ``acquire(avoiding:)`` with the failed endpoint, so another
    /// endpoint when the upstream has one.
    public static func shouldRetry(method: HTTPRequest.Method, failure: UpstreamOutcome, attempt: Int, deadline: NIODeadline,
                                   now: NIODeadline = .now()) -> Bool {
        idempotentMethods.contains(method) && failure == .connectionFailed && attempt < maximumAttempts && now < deadline
    }

    /// Endpoint indices, best first (see ``next(avoiding:)``); advances the round-robin.
    private func preferenceOrder(avoiding: Endpoint?) -> [Int] {
        // Asked before taking the pool's lock: a breaker never calls into the pool.
        let circuits = endpoints.map(\.breaker.state)
        let policy = self.policy
        let current = now()
        let avoided = avoiding.flatMap { owns($0) ? $0.index : nil }
        let (order, changes) = state.withLockedValue { state -> ([Int], [Change]) in
            let changes = readmit(&state, at: current)
            let count = endpoints.count
            let cyclic = (0..<count).map { (state.cursor + $0) % count }.filter { $0 != avoided }
            let inRotation = cyclic.filter { state.health[$0].isUp && Self.admits(circuits[$0], policy: policy.breaker) }
            if let first = inRotation.first { state.cursor = first + 1 }
            let rest = cyclic.filter { !inRotation.contains($0) }.sorted { a, b in
                switch (Self.reopens(circuits[a], at: current, policy: policy.breaker), Self.reopens(circuits[b], at: current, policy: policy.breaker)) {
                case (nil, nil):
                    let since = (state.health[a].unavailableSince ?? -.infinity, state.health[b].unavailableSince ?? -.infinity)
                    return since.0 != since.1 ? since.0 < since.1 : a < b
                case (nil, .some): return true
                case (.some, nil): return false
                case (.some(let x), .some(let y)): return x != y ? x < y : a < b
                }
            }
            return (inRotation + rest + (avoided.map { [$0] } ?? []), changes)
        }
        report(changes)
        return order
    }

    /// Whether a breaker in `state` would let a request through now.
    private static func admits(_ state: CircuitBreaker.State, policy: CircuitBreaker.Policy) -> Bool {
        reopens(state, at: 0, policy: policy) == nil
    }

    /// When a breaker in `state` lets requests through again; nil when it does now.
    private static func reopens(_ state: CircuitBreaker.State, at current: Double, policy: CircuitBreaker.Policy) -> Double? {
        switch state {
        case .closed: nil
        case .open(let until, _): until
        case .halfOpen(let probes, _, _): probes < policy.halfOpenProbes ? nil : current
        }
    }

    private func owns(_ endpoint: Endpoint) -> Bool {
        endpoints.indices.contains(endpoint.index) && endpoints[endpoint.index] === endpoint
    }

    /// Brings back endpoints whose ejection has run out.
    private func readmit(_ state: inout State, at current: Double) -> [Change] {
        var changes: [Change] = []
        for index in state.health.indices {
            guard let until = state.health[index].ejectedUntil, until <= current else { continue }
            state.health[index].ejectedUntil = nil
            state.health[index].consecutiveFailures = 0
            updateGauge(index, state)
            changes.append(.readmitted(index))
        }
        return changes
    }

    /// Inside the lock, so concurrent changes reach the gauge in order.
    private func updateGauge(_ index: Int, _ state: State) {
        endpoints[index].upGauge.record(state.health[index].isUp ? 1 : 0)
    }

    private func report(_ changes: [Change]) {
        for change in changes {
            switch change {
            case .ejected(let index, let failures):
                logger.warning("upstream endpoint ejected", metadata: metadata(index, ["failures": "\(failures)", "ejection.seconds": "\(policy.ejectionSeconds)"]))
            case .readmitted(let index):
                logger.info("upstream endpoint readmitted", metadata: metadata(index))
            case .markedDown(let index, let failedChecks):
                logger.warning("upstream endpoint failed its health checks", metadata: metadata(index, ["failed.checks": "\(failedChecks)"]))
            case .markedUp(let index):
                logger.info("upstream endpoint passes its health check", metadata: metadata(index))
            }
        }
    }

    private func metadata(_ index: Int, _ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        extra.merging(["upstream": "\(name)", "upstream.endpoint": "\(endpoints[index].url.absoluteString)"]) { $1 }
    }
}

/// Active health: asks every endpoint of every pool for `/health/ready` each `interval` and
/// tells its pool whether it passed. A `Service`, so it stops on graceful shutdown.
public struct ActiveHealthChecker: Service {
    /// Whether the endpoint at this base URL is ready. It must honour task cancellation: the
    /// checker cancels it after `timeout` and counts a failed check.
    public typealias Probe = @Sendable (_ baseURL: URL) async -> Bool

    public let pools: [UpstreamPool]
    public let interval: Duration
    public let timeout: Duration
    let probe: Probe

    public init(pools: [UpstreamPool], interval: Duration = .seconds(5), timeout: Duration = .seconds(1), probe: @escaping Probe) {
        self.pools = pools
        self.interval = interval
        self.timeout = timeout
        self.probe = probe
    }

    /// Checks with `GET <base>/health/ready` through `httpClient`: any 2xx passes.
    public init(pools: [UpstreamPool], interval: Duration = .seconds(5), timeout: Duration = .seconds(1), httpClient: HTTPClient, logger: Logger) {
        self.init(pools: pools, interval: interval, timeout: timeout, probe: Self.httpProbe(httpClient: httpClient, timeout: timeout, logger: logger))
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await checkAll()
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// One round: every endpoint at once, each given at most `timeout`.
    public func checkAll() async {
        await withTaskGroup(of: Void.self) { group in
            for pool in pools {
                for endpoint in pool.endpoints {
                    group.addTask {
                        pool.recordCheck(endpoint, passed: await passes(endpoint.url))
                    }
                }
            }
        }
        for pool in pools { pool.refreshMetrics() }
    }

    private func passes(_ url: URL) async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask { await probe(url) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : false
            }
            defer { group.cancelAll() }
            while let result = await group.next() {
                if let result { return result }
            }
            return false
        }
    }

    /// `<base>/health/ready`, keeping any path the base URL has.
    public static func readinessURL(for base: URL) -> String {
        var target = base.absoluteString
        if target.hasSuffix("/") { target.removeLast() }
        return target + "/health/ready"
    }

    public static func httpProbe(httpClient: HTTPClient, timeout: Duration, logger: Logger) -> Probe {
        { base in
            let request = HTTPClientRequest(url: readinessURL(for: base))
            do {
                let response = try await httpClient.execute(request, timeout: .nanoseconds(Int64(timeout / .nanoseconds(1))), logger: logger)
                // Read (and drop) the body so the connection goes back to the pool.
                _ = try await response.body.collect(upTo: 64 * 1024)
                return (200..<300).contains(Int(response.status.code))
            } catch {
                logger.debug("health check failed", metadata: ["upstream.endpoint": "\(base.absoluteString)", "error": "\(error)"])
                return false
            }
        }
    }
}
