import Foundation
import NIOConcurrencyHelpers
import Synchronization

/// A circuit breaker for one upstream endpoint: it stops sending requests to an endpoint that
/// keeps failing, and lets a few probe requests through after a while to learn whether it recovered.
///
/// What a failure is belongs to the caller (see ``UpstreamOutcome/countsAgainstCircuit``): no
/// connection, no answer in time, a broken exchange, or a 502, 503 or 504 answer. Other answers,
/// 4xx and 500 included, are successes: the endpoint is up and answering for itself.
///
/// The rules are the pure ``transition(from:on:policy:)``; this class holds the state behind a
/// lock and hands out ``Permit``s. Times are seconds on a monotonic clock, injected for tests.
public final class CircuitBreaker: Sendable {
    /// When the breaker opens, how long it stays open, and how it closes again.
    public struct Policy: Sendable, Equatable {
        /// Consecutive failures that open a closed breaker.
        public var consecutiveFailuresToOpen: Int
        /// Share of failures among the last ``windowSize`` outcomes that opens it...
        public var failureRatioToOpen: Double
        public var windowSize: Int
        /// ...once the window holds at least this many outcomes (never more than ``windowSize``).
        public var minimumRequests: Int
        /// How long it stays open the first time, in seconds.
        public var openSeconds: Double
        /// Each failed probe doubles the open time, up to this (never less than ``openSeconds``).
        public var maximumOpenSeconds: Double
        /// Probe requests allowed at once while half-open.
        public var halfOpenProbes: Int
        /// Successful probes that close it again.
        public var successesToClose: Int

        /// Out-of-range values are raised to the smallest that makes sense (at least one failure,
        /// one probe, one success; a window of at least one outcome).
        public init(consecutiveFailuresToOpen: Int = 5, failureRatioToOpen: Double = 0.5, windowSize: Int = 20,
                    minimumRequests: Int = 10, openSeconds: Double = 10, maximumOpenSeconds: Double = 60,
                    halfOpenProbes: Int = 1, successesToClose: Int = 2) {
            self.consecutiveFailuresToOpen = max(1, consecutiveFailuresToOpen)
            self.failureRatioToOpen = failureRatioToOpen
            self.windowSize = max(1, windowSize)
            self.minimumRequests = min(max(1, minimumRequests), self.windowSize)
            self.openSeconds = max(0, openSeconds)
            self.maximumOpenSeconds = max(self.openSeconds, maximumOpenSeconds)
            self.halfOpenProbes = max(1, halfOpenProbes)
            self.successesToClose = max(1, successesToClose)
        }
    }

    /// The last outcomes of a closed breaker, oldest first (`true` for a failure).
    public struct OutcomeWindow: Sendable, Equatable {
        public private(set) var failures: [Bool]

        public init(_ failures: [Bool] = []) {
            self.failures = failures
        }

        public var count: Int { failures.count }
        public var failureCount: Int { failures.count(where: { $0 }) }
        public var failureRatio: Double { failures.isEmpty ? 0 : Double(failureCount) / Double(failures.count) }

        /// The window with one more outcome, keeping only the last `limit`.
        public func appending(failure: Bool, limit: Int) -> OutcomeWindow {
            var next = failures
            next.append(failure)
            if next.count > limit { next.removeFirst(next.count - limit) }
            return OutcomeWindow(next)
        }
    }

    public enum State: Sendable, Equatable {
        /// Requests flow; failures are counted.
        case closed(consecutiveFailures: Int, window: OutcomeWindow)
        /// Requests are refused until `until`; `openedFor` is this period's length (doubled after a failed probe).
        case open(until: Double, openedFor: Double)
        /// A few probe requests flow; `openedFor` is the open period that preceded it.
        case halfOpen(probesInFlight: Int, successes: Int, openedFor: Double)

        public static let initial = State.closed(consecutiveFailures: 0, window: OutcomeWindow())

        public var phase: Phase {
            switch self {
            case .closed: .closed
            case .open: .open
            case .halfOpen: .halfOpen
            }
        }
    }

    /// The state without its counters; its raw value is the `gateway_circuit_state` gauge.
    public enum Phase: Int, Sendable, Equatable, CustomStringConvertible {
        case closed = 0
        case open = 1
        case halfOpen = 2

        public var description: String {
            switch self {
            case .closed: "closed"
            case .open: "open"
            case .halfOpen: "half-open"
            }
        }
    }

    /// How a request was let through: normally, or as one of the half-open probes.
    public enum Admission: Sendable, Equatable {
        case normal
        case probe
    }

    public enum Event: Sendable, Equatable {
        /// A request asks to go through.
        case requestStarted
        case succeeded(Admission)
        /// `at` starts the open period if this failure opens the breaker.
        case failed(Admission, at: Double)
        /// The request ended without telling anything about the endpoint (the client went away).
        case cancelled(Admission)
        case timePassed(now: Double)
    }

    public enum Effect: Sendable, Equatable {
        case admitted(Admission)
        /// The request is refused; `until` is when the breaker half-opens, nil while the probes are busy.
        case refused(until: Double?)
        case opened(until: Double)
        case halfOpened
        case closed
    }

    public enum TransitionError: Error, Equatable {
        /// A probe's outcome arrived while no probe was in flight.
        case noProbeInFlight
    }

    /// The breaker's rules. Outcomes of requests admitted in an earlier phase are ignored where
    /// they say nothing about the current one: any outcome while open, a normal request's outcome
    /// while half-open. While closed, every outcome counts, a late probe's too.
    public static func transition(from state: State, on event: Event, policy: Policy) throws -> (State, [Effect]) {
        switch (state, event) {
        case (.closed, .requestStarted):
            return (state, [.admitted(.normal)])
        case (.closed(_, let window), .succeeded):
            return (.closed(consecutiveFailures: 0, window: window.appending(failure: false, limit: policy.windowSize)), [])
        case (.closed(let failures, let window), .failed(_, let at)):
            let failures = failures + 1
            let window = window.appending(failure: true, limit: policy.windowSize)
            let ratioTrips = window.count >= policy.minimumRequests && window.failureRatio >= policy.failureRatioToOpen
            guard failures >= policy.consecutiveFailuresToOpen || ratioTrips else {
                return (.closed(consecutiveFailures: failures, window: window), [])
            }
            return (.open(until: at + policy.openSeconds, openedFor: policy.openSeconds), [.opened(until: at + policy.openSeconds)])
        case (.closed, .cancelled), (.closed, .timePassed):
            return (state, [])

        case (.open(let until, _), .requestStarted):
            return (state, [.refused(until: until)])
        case (.open, .succeeded), (.open, .failed), (.open, .cancelled):
            return (state, [])
        case (.open(let until, let openedFor), .timePassed(let now)):
            guard now >= until else { return (state, []) }
            return (.halfOpen(probesInFlight: 0, successes: 0, openedFor: openedFor), [.halfOpened])

        case (.halfOpen(let probes, let successes, let openedFor), .requestStarted):
            guard probes < policy.halfOpenProbes else { return (state, [.refused(until: nil)]) }
            return (.halfOpen(probesInFlight: probes + 1, successes: successes, openedFor: openedFor), [.admitted(.probe)])
        case (.halfOpen, .succeeded(.normal)), (.halfOpen, .failed(.normal, _)), (.halfOpen, .cancelled(.normal)), (.halfOpen, .timePassed):
            return (state, [])
        case (.halfOpen(let probes, let successes, let openedFor), .succeeded(.probe)):
            guard probes > 0 else { throw TransitionError.noProbeInFlight }
            guard successes + 1 >= policy.successesToClose else {
                return (.halfOpen(probesInFlight: probes - 1, successes: successes + 1, openedFor: openedFor), [])
            }
            return (.initial, [.closed])
        case (.halfOpen(let probes, _, let openedFor), .failed(.probe, let at)):
            guard probes > 0 else { throw TransitionError.noProbeInFlight }
            let next = min(openedFor * 2, policy.maximumOpenSeconds)
            return (.open(until: at + next, openedFor: next), [.opened(until: at + next)])
        case (.halfOpen(let probes, let successes, let openedFor), .cancelled(.probe)):
            guard probes > 0 else { throw TransitionError.noProbeInFlight }
            return (.halfOpen(probesInFlight: probes - 1, successes: successes, openedFor: openedFor), [])
        }
    }

    /// A monotonic clock in seconds (what ``init(policy:now:onTransition:)`` uses unless told otherwise).
    public static let monotonicSeconds: @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    struct Guarded {
        var state: State = .initial
        /// Counts half-open periods, so a probe admitted in an earlier one reports as a normal request.
        var epoch: UInt64 = 0
    }

    public let policy: Policy
    private let now: @Sendable () -> Double
    private let onTransition: @Sendable (Phase) -> Void
    private let guarded = NIOLockedValueBox(Guarded())

    /// - Parameter onTransition: Told each new phase, outside the lock (metrics, logs).
    public init(policy: Policy = Policy(), now: @escaping @Sendable () -> Double = CircuitBreaker.monotonicSeconds,
                onTransition: @escaping @Sendable (Phase) -> Void = { _ in }) {
        self.policy = policy
        self.now = now
        self.onTransition = onTransition
    }

    /// Permission for one request, or nil while the breaker refuses requests: the caller answers
    /// 503 with `Retry-After: ` ``retryAfterSeconds``.
    public func acquire() -> Permit? {
        let current = now()
        let (effects, epoch) = guarded.withLockedValue { guarded in
            let effects = apply(.timePassed(now: current), to: &guarded) + apply(.requestStarted, to: &guarded)
            return (effects, guarded.epoch)
        }
        announce(effects)
        for case .admitted(let admission) in effects {
            return Permit(breaker: self, isProbe: admission == .probe, epoch: epoch)
        }
        return nil
    }

    /// The state now (an open breaker whose time is up reads half-open).
    public var state: State {
        state(at: now())
    }

    public var phase: Phase { state.phase }

    /// Whole seconds a refused caller should wait: the open time left, rounded up; at least 1
    /// (1 while half-open probes are busy, or if the breaker closed in between).
    public var retryAfterSeconds: Int {
        let current = now()
        guard case .open(let until, _) = state(at: current) else { return 1 }
        return max(1, Int((until - current).rounded(.up)))
    }

    private func state(at current: Double) -> State {
        let (state, effects) = guarded.withLockedValue { guarded in
            let effects = apply(.timePassed(now: current), to: &guarded)
            return (guarded.state, effects)
        }
        announce(effects)
        return state
    }

    fileprivate func settle(isProbe: Bool, epoch: UInt64, event: (Admission) -> Event) {
        let effects = guarded.withLockedValue { guarded in
            apply(event(isProbe && epoch == guarded.epoch ? .probe : .normal), to: &guarded)
        }
        announce(effects)
    }

    fileprivate var currentTime: Double { now() }

    private func apply(_ event: Event, to guarded: inout Guarded) -> [Effect] {
        // Each permit settles once and probes of an earlier period report as normal, so the rules
        // never refuse what arrives here; were they to, the state stays as it was.
        guard let (state, effects) = try? Self.transition(from: guarded.state, on: event, policy: policy) else { return [] }
        guarded.state = state
        if effects.contains(.halfOpened) { guarded.epoch &+= 1 }
        return effects
    }

    private func announce(_ effects: [Effect]) {
        for effect in effects {
            switch effect {
            case .opened: onTransition(.open)
            case .halfOpened: onTransition(.halfOpen)
            case .closed: onTransition(.closed)
            case .admitted, .refused: break
            }
        }
    }

    /// Leave to send one request. Report its outcome exactly once (later reports are ignored);
    /// a permit dropped without a report counts as cancelled, so a probe slot is never lost.
    public final class Permit: Sendable {
        /// Whether this request is one of the half-open probes.
        public let isProbe: Bool
        private let breaker: CircuitBreaker
        private let epoch: UInt64
        private let settled = Atomic(false)

        fileprivate init(breaker: CircuitBreaker, isProbe: Bool, epoch: UInt64) {
            self.breaker = breaker
            self.isProbe = isProbe
            self.epoch = epoch
        }

        public func record(success: Bool) {
            guard claim() else { return }
            let at = breaker.currentTime
            breaker.settle(isProbe: isProbe, epoch: epoch) { success ? .succeeded($0) : .failed($0, at: at) }
        }

        /// The request ended without saying anything about the endpoint.
        public func cancel() {
            guard claim() else { return }
            breaker.settle(isProbe: isProbe, epoch: epoch) { .cancelled($0) }
        }

        /// Records an upstream outcome: cancelled, or a failure if it counts against the circuit.
        public func record(_ outcome: UpstreamOutcome) {
            if outcome == .cancelled {
                cancel()
            } else {
                record(success: !outcome.countsAgainstCircuit)
            }
        }

        private func claim() -> Bool {
            settled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
        }

        deinit {
            cancel()
        }
    }
}

/// How one request to an upstream endpoint went, as the proxy saw it.
public enum UpstreamOutcome: Sendable, Equatable {
    /// The endpoint answered with this status.
    case answered(status: Int)
    /// The request never reached the endpoint: connection refused or reset before sending, connect timeout.
    case connectionFailed
    /// No answer before the deadline.
    case timedOut
    /// The exchange broke after the request was sent (reset mid-response, malformed answer).
    case interrupted
    /// The client went away: nothing learnt about the endpoint.
    case cancelled

    /// Whether it is a failure for the endpoint's circuit breaker: anything but an answer, or a
    /// 502, 503 or 504 answer (the endpoint, or what it stands on, is down or overloaded). Other
    /// answers, 4xx and 500 included, show an endpoint that is up and answering for itself; a
    /// 500 is one request's bug and must not take a whole endpoint out.
    public var countsAgainstCircuit: Bool {
        switch self {
        case .answered(let status): [502, 503, 504].contains(status)
        case .connectionFailed, .timedOut, .interrupted: true
        case .cancelled: false
        }
    }

    /// Whether it counts toward ejecting the endpoint (passive health): it could not be reached
    /// or did not answer in time. Any answer resets the count.
    public var countsTowardEjection: Bool {
        self == .connectionFailed || self == .timedOut
    }
}
