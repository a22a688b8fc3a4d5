import Foundation
import Synchronization
import Testing
@testable import Gateway

@Suite struct CircuitBreakerTests {
    typealias State = CircuitBreaker.State
    typealias Event = CircuitBreaker.Event
    typealias Effect = CircuitBreaker.Effect

    /// The defaults: 5 consecutive failures or half of the last 20 (at least 10) open it for 10 s,
    /// doubling up to 60 s; 1 probe at a time, 2 successes close it.
    let policy = CircuitBreaker.Policy()

    enum Expected {
        case transition(State, [Effect])
        case refused(CircuitBreaker.TransitionError)
    }

    /// One name per kind of event; the switch fails to compile when an event is added, and
    /// ``expectEveryEvent`` fails when a table leaves a kind out.
    static func kind(_ event: Event) -> String {
        switch event {
        case .requestStarted: "requestStarted"
        case .succeeded(.normal): "succeeded(normal)"
        case .succeeded(.probe): "succeeded(probe)"
        case .failed(.normal, _): "failed(normal)"
        case .failed(.probe, _): "failed(probe)"
        case .cancelled(.normal): "cancelled(normal)"
        case .cancelled(.probe): "cancelled(probe)"
        case .timePassed: "timePassed"
        }
    }

    static let allKinds: Set<String> = [
        "requestStarted", "succeeded(normal)", "succeeded(probe)", "failed(normal)", "failed(probe)",
        "cancelled(normal)", "cancelled(probe)", "timePassed",
    ]

    func expectEveryEvent(from state: State, _ table: [(Event, Expected)], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(Set(table.map { Self.kind($0.0) }) == Self.allKinds, "a kind of event is missing", sourceLocation: sourceLocation)
        for (event, expected) in table {
            switch expected {
            case .transition(let next, let effects):
                let result = try? CircuitBreaker.transition(from: state, on: event, policy: policy)
                #expect(result?.0 == next, "\(state) on \(event)", sourceLocation: sourceLocation)
                #expect(result?.1 == effects, "\(state) on \(event)", sourceLocation: sourceLocation)
            case .refused(let error):
                #expect(throws: error, "\(state) on \(event)", sourceLocation: sourceLocation) {
                    try CircuitBreaker.transition(from: state, on: event, policy: policy)
                }
            }
        }
    }

    // MARK: The transition function, every state × every event

    @Test func closedAdmitsAndCountsEveryOutcome() {
        let fresh = State.initial
        let counted = State.closed(consecutiveFailures: 0, window: .init([false]))
        let oneFailure = State.closed(consecutiveFailures: 1, window: .init([true]))
        expectEveryEvent(from: fresh, [
            (.requestStarted, .transition(fresh, [.admitted(.normal)])),
            (.succeeded(.normal), .transition(counted, [])),
            // A late probe from a half-open period that has closed still reports on the endpoint.
            (.succeeded(.probe), .transition(counted, [])),
            (.failed(.normal, at: 100), .transition(oneFailure, [])),
            (.failed(.probe, at: 100), .transition(oneFailure, [])),
            (.cancelled(.normal), .transition(fresh, [])),
            (.cancelled(.probe), .transition(fresh, [])),
            (.timePassed(now: 1_000_000), .transition(fresh, [])),
        ])
    }

    @Test func closedOpensOnTheFifthConsecutiveFailure() {
        let four = State.closed(consecutiveFailures: 4, window: .init([false, true, true, true, true]))
        let opened = State.open(until: 110, openedFor: 10)
        expectEveryEvent(from: four, [
            (.requestStarted, .transition(four, [.admitted(.normal)])),
            (.succeeded(.normal), .transition(.closed(consecutiveFailures: 0, window: .init([false, true, true, true, true, false])), [])),
            (.succeeded(.probe), .transition(.closed(consecutiveFailures: 0, window: .init([false, true, true, true, true, false])), [])),
            (.failed(.normal, at: 100), .transition(opened, [.opened(until: 110)])),
            (.failed(.probe, at: 100), .transition(opened, [.opened(until: 110)])),
            (.cancelled(.normal), .transition(four, [])),
            (.cancelled(.probe), .transition(four, [])),
            (.timePassed(now: 1_000_000), .transition(four, [])),
        ])
    }

    @Test func openRefusesIgnoresLateOutcomesAndHalfOpensWhenItsTimeIsUp() throws {
        let open = State.open(until: 110, openedFor: 10)
        expectEveryEvent(from: open, [
            (.requestStarted, .transition(open, [.refused(until: 110)])),
            // Outcomes of requests admitted before it opened say nothing new: no extension.
            (.succeeded(.normal), .transition(open, [])),
            (.succeeded(.probe), .transition(open, [])),
            (.failed(.normal, at: 105), .transition(open, [])),
            (.failed(.probe, at: 105), .transition(open, [])),
            (.cancelled(.normal), .transition(open, [])),
            (.cancelled(.probe), .transition(open, [])),
            (.timePassed(now: 110), .transition(.halfOpen(probesInFlight: 0, successes: 0, openedFor: 10), [.halfOpened])),
        ])
        let early = try CircuitBreaker.transition(from: open, on: .timePassed(now: 109.999), policy: policy)
        #expect(early.0 == open)
        #expect(early.1.isEmpty)
    }

    @Test func halfOpenWithAFreeSlotAdmitsAProbe() {
        let idle = State.halfOpen(probesInFlight: 0, successes: 0, openedFor: 10)
        expectEveryEvent(from: idle, [
            (.requestStarted, .transition(.halfOpen(probesInFlight: 1, successes: 0, openedFor: 10), [.admitted(.probe)])),
            // A request admitted before the breaker opened: its outcome is old news.
            (.succeeded(.normal), .transition(idle, [])),
            (.failed(.normal, at: 120), .transition(idle, [])),
            (.cancelled(.normal), .transition(idle, [])),
            // No probe is in flight, so no probe can report.
            (.succeeded(.probe), .refused(.noProbeInFlight)),
            (.failed(.probe, at: 120), .refused(.noProbeInFlight)),
            (.cancelled(.probe), .refused(.noProbeInFlight)),
            (.timePassed(now: 1_000_000), .transition(idle, [])),
        ])
    }

    @Test func halfOpenWithItsProbeBusyWaitsForItsOutcome() {
        let busy = State.halfOpen(probesInFlight: 1, successes: 0, openedFor: 10)
        expectEveryEvent(from: busy, [
            (.requestStarted, .transition(busy, [.refused(until: nil)])),
            (.succeeded(.normal), .transition(busy, [])),
            (.succeeded(.probe), .transition(.halfOpen(probesInFlight: 0, successes: 1, openedFor: 10), [])),
            (.failed(.normal, at: 120), .transition(busy, [])),
            // A failed probe opens it again for twice as long.
            (.failed(.probe, at: 120), .transition(.open(until: 140, openedFor: 20), [.opened(until: 140)])),
            (.cancelled(.normal), .transition(busy, [])),
            (.cancelled(.probe), .transition(.halfOpen(probesInFlight: 0, successes: 0, openedFor: 10), [])),
            (.timePassed(now: 1_000_000), .transition(busy, [])),
        ])
    }

    @Test func halfOpenClosesOnItsSecondSuccessfulProbe() {
        let almost = State.halfOpen(probesInFlight: 1, successes: 1, openedFor: 40)
        expectEveryEvent(from: almost, [
            (.requestStarted, .transition(almost, [.refused(until: nil)])),
            (.succeeded(.normal), .transition(almost, [])),
            (.succeeded(.probe), .transition(.initial, [.closed])),
            (.failed(.normal, at: 120), .transition(almost, [])),
            (.failed(.probe, at: 120), .transition(.open(until: 180, openedFor: 60), [.opened(until: 180)])),
            (.cancelled(.normal), .transition(almost, [])),
            (.cancelled(.probe), .transition(.halfOpen(probesInFlight: 0, successes: 1, openedFor: 40), [])),
            (.timePassed(now: 1_000_000), .transition(almost, [])),
        ])
    }

    // MARK: Rules over several events

    func run(_ events: [Event], from state: State = .initial, policy: CircuitBreaker.Policy? = nil) throws -> (State, [Effect]) {
        var state = state
        var effects: [Effect] = []
        for event in events {
            let (next, produced) = try CircuitBreaker.transition(from: state, on: event, policy: policy ?? self.policy)
            state = next
            effects += produced
        }
        return (state, effects)
    }

    @Test func aSuccessBreaksTheRunOfConsecutiveFailures() throws {
        let (state, effects) = try run([.failed(.normal, at: 1), .failed(.normal, at: 2), .failed(.normal, at: 3), .failed(.normal, at: 4),
                                        .succeeded(.normal), .failed(.normal, at: 5), .failed(.normal, at: 6)])
        #expect(effects.isEmpty)
        #expect(state == .closed(consecutiveFailures: 2, window: .init([true, true, true, true, false, true, true])))
    }

    @Test func theFailureRatioCountsOnlyOnceTheWindowHoldsTheMinimum() throws {
        let ratioOnly = CircuitBreaker.Policy(consecutiveFailuresToOpen: 100, failureRatioToOpen: 0.5, windowSize: 20, minimumRequests: 10)
        let nine = Array(repeating: Event.failed(.normal, at: 1), count: 9)
        let (afterNine, quiet) = try run(nine, policy: ratioOnly)
        #expect(quiet.isEmpty, "9 outcomes are below the minimum of 10, even all failed")
        let (_, effects) = try run([.failed(.normal, at: 2)], from: afterNine, policy: ratioOnly)
        #expect(effects == [.opened(until: 12)])

        // Five failures among ten outcomes, never two in a row: exactly the ratio.
        let alternating = (0..<5).flatMap { _ in [Event.succeeded(.normal), .failed(.normal, at: 3)] }
        let (_, atRatio) = try run(alternating, policy: ratioOnly)
        #expect(atRatio == [.opened(until: 13)])
        // Four among ten, the tenth a failure, is below it.
        let fourInTen: [Event] = [.succeeded(.normal), .succeeded(.normal)]
            + (0..<3).flatMap { _ in [Event.failed(.normal, at: 4), .succeeded(.normal)] }
            + [.succeeded(.normal), .failed(.normal, at: 4)]
        let (below, belowEffects) = try run(fourInTen, policy: ratioOnly)
        #expect(belowEffects.isEmpty)
        #expect(below == .closed(consecutiveFailures: 1, window: .init([false, false, true, false, true, false, true, false, false, true])))
    }

    @Test func theWindowForgetsOutcomesOlderThanItsSize() throws {
        let small = CircuitBreaker.Policy(consecutiveFailuresToOpen: 100, failureRatioToOpen: 0.5, windowSize: 4, minimumRequests: 4)
        // Two failures in seven outcomes overall, but two in the last four.
        let events: [Event] = [.succeeded(.normal), .succeeded(.normal), .succeeded(.normal), .succeeded(.normal),
                               .failed(.normal, at: 1), .succeeded(.normal)]
        let (state, quiet) = try run(events, policy: small)
        #expect(quiet.isEmpty)
        #expect(state == .closed(consecutiveFailures: 0, window: .init([false, false, true, false])))
        let (_, effects) = try run([.failed(.normal, at: 2)], from: state, policy: small)
        #expect(effects == [.opened(until: 12)])
    }

    @Test func eachFailedProbeDoublesTheOpenTimeUpToTheMaximumAndClosingResetsIt() throws {
        var state = State.initial
        var opened: [Double] = []
        var now = 0.0
        for _ in 0..<5 { (state, _) = try run([.failed(.normal, at: now)], from: state) }
        for _ in 0..<5 {
            guard case .open(let until, let openedFor) = state else { Issue.record("not open: \(state)"); return }
            opened.append(openedFor)
            now = until
            (state, _) = try run([.timePassed(now: now), .requestStarted, .failed(.probe, at: now)], from: state)
        }
        #expect(opened == [10, 20, 40, 60, 60])

        // Close it (two successful probes), then open it again: back to 10 s.
        guard case .open(let until, _) = state else { Issue.record("not open: \(state)"); return }
        (state, _) = try run([.timePassed(now: until), .requestStarted, .succeeded(.probe), .requestStarted, .succeeded(.probe)], from: state)
        #expect(state == .initial)
        (state, _) = try run(Array(repeating: .failed(.normal, at: 1000), count: 5), from: state)
        #expect(state == .open(until: 1010, openedFor: 10))
    }

    @Test func halfOpenAdmitsAsManyProbesAtOnceAsThePolicyAllows() throws {
        let two = CircuitBreaker.Policy(halfOpenProbes: 2, successesToClose: 3)
        let start = State.halfOpen(probesInFlight: 0, successes: 0, openedFor: 10)
        let (full, admitted) = try run([.requestStarted, .requestStarted, .requestStarted], from: start, policy: two)
        #expect(admitted == [.admitted(.probe), .admitted(.probe), .refused(until: nil)])
        // A probe's outcome frees its slot; three successes close it.
        let (state, effects) = try run([.succeeded(.probe), .requestStarted, .requestStarted, .succeeded(.probe)], from: full, policy: two)
        #expect(effects == [.admitted(.probe), .refused(until: nil)])
        #expect(state == .halfOpen(probesInFlight: 1, successes: 2, openedFor: 10))
        let (closed, closing) = try run([.succeeded(.probe)], from: state, policy: two)
        #expect(closing == [.closed])
        #expect(closed == .initial)
    }

    // MARK: The thread-safe breaker

    func breaker(_ clock: ManualClock, policy: CircuitBreaker.Policy = CircuitBreaker.Policy(),
                 transitions: PhaseLog? = nil) -> CircuitBreaker {
        CircuitBreaker(policy: policy, now: { clock.now.timeIntervalSince1970 }, onTransition: { transitions?.append($0) })
    }

    final class PhaseLog: Sendable {
        private let phases = Mutex<[CircuitBreaker.Phase]>([])
        func append(_ phase: CircuitBreaker.Phase) { phases.withLock { $0.append(phase) } }
        var all: [CircuitBreaker.Phase] { phases.withLock { $0 } }
    }

    @Test func theBreakerRefusesWhileOpenAndSaysForHowLong() throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        let log = PhaseLog()
        let breaker = breaker(clock, transitions: log)
        for _ in 0..<4 { try #require(breaker.acquire()).record(success: false) }
        #expect(breaker.phase == .closed)
        try #require(breaker.acquire()).record(success: false)
        #expect(breaker.phase == .open)
        #expect(breaker.phase.rawValue == 1)
        #expect(breaker.acquire() == nil)
        #expect(breaker.retryAfterSeconds == 10)
        clock.advance(seconds: 3.5)
        #expect(breaker.acquire() == nil)
        #expect(breaker.retryAfterSeconds == 7, "6.5 s left, rounded up")

        clock.advance(seconds: 6.5)
        let probe = try #require(breaker.acquire())
        #expect(probe.isProbe)
        #expect(breaker.phase == .halfOpen)
        #expect(breaker.phase.rawValue == 2)
        #expect(breaker.acquire() == nil, "one probe at a time")
        #expect(breaker.retryAfterSeconds == 1)
        probe.record(success: true)
        let second = try #require(breaker.acquire())
        #expect(second.isProbe)
        second.record(success: true)
        #expect(breaker.phase == .closed)
        #expect(breaker.phase.rawValue == 0)
        let normal = try #require(breaker.acquire())
        #expect(!normal.isProbe)
        #expect(log.all == [.open, .halfOpen, .closed])
    }

    @Test func anOpenBreakerReadsHalfOpenOnceItsTimeIsUpWithoutARequest() throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        let breaker = breaker(clock, policy: .init(consecutiveFailuresToOpen: 1))
        try #require(breaker.acquire()).record(success: false)
        #expect(breaker.state == .open(until: 1_010, openedFor: 10))
        clock.advance(seconds: 10)
        #expect(breaker.state == .halfOpen(probesInFlight: 0, successes: 0, openedFor: 10))
    }

    @Test func aFailedProbeReopensForLonger() throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        let breaker = breaker(clock, policy: .init(consecutiveFailuresToOpen: 1))
        try #require(breaker.acquire()).record(success: false)
        clock.advance(seconds: 10)
        try #require(breaker.acquire()).record(success: false)
        #expect(breaker.acquire() == nil)
        #expect(breaker.retryAfterSeconds == 20)
    }

    @Test func aPermitCountsOnceAndADroppedOneFreesItsProbeSlot() throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        let breaker = breaker(clock)
        let permit = try #require(breaker.acquire())
        permit.record(success: false)
        permit.record(success: false)
        permit.cancel()
        #expect(breaker.state == .closed(consecutiveFailures: 1, window: .init([true])))

        for _ in 0..<4 { try #require(breaker.acquire()).record(success: false) }
        clock.advance(seconds: 10)
        do {
            let forgotten = breaker.acquire()
            #expect(forgotten?.isProbe == true)
        }
        // The forgotten probe was released when it went away: the slot is free again.
        let probe = try #require(breaker.acquire())
        #expect(probe.isProbe)
        probe.cancel()
        #expect(breaker.state == .halfOpen(probesInFlight: 0, successes: 0, openedFor: 10))
    }

    @Test func aProbeFromAnEarlierHalfOpenPeriodDoesNotCountAsAProbe() throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        let breaker = breaker(clock, policy: .init(consecutiveFailuresToOpen: 1, halfOpenProbes: 2))
        try #require(breaker.acquire()).record(success: false)
        clock.advance(seconds: 10)
        let slow = try #require(breaker.acquire())
        let fast = try #require(breaker.acquire())
        fast.record(success: false)
        clock.advance(seconds: 20)
        let current = try #require(breaker.acquire())
        #expect(current.isProbe)
        // The slow probe belongs to the period that ended; its success must not close this one.
        slow.record(success: true)
        #expect(breaker.state == .halfOpen(probesInFlight: 1, successes: 0, openedFor: 20))
        current.record(success: true)
        #expect(breaker.state == .halfOpen(probesInFlight: 0, successes: 1, openedFor: 20))
    }

    @Test func outcomesCountAgainstTheCircuitOnlyWhenTheEndpointFailed() {
        for status in [200, 201, 204, 301, 400, 401, 403, 404, 409, 422, 429, 500, 501] {
            #expect(!UpstreamOutcome.answered(status: status).countsAgainstCircuit, "\(status)")
        }
        for status in [502, 503, 504] {
            #expect(UpstreamOutcome.answered(status: status).countsAgainstCircuit, "\(status)")
        }
        #expect(UpstreamOutcome.connectionFailed.countsAgainstCircuit)
        #expect(UpstreamOutcome.timedOut.countsAgainstCircuit)
        #expect(UpstreamOutcome.interrupted.countsAgainstCircuit)
        #expect(!UpstreamOutcome.cancelled.countsAgainstCircuit)
    }

    @Test func aPermitRecordsAnUpstreamOutcome() throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_000))
        let breaker = breaker(clock)
        try #require(breaker.acquire()).record(.answered(status: 404))
        try #require(breaker.acquire()).record(.answered(status: 503))
        try #require(breaker.acquire()).record(.cancelled)
        #expect(breaker.state == .closed(consecutiveFailures: 1, window: .init([false, true])))
    }
}
