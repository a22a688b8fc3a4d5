import Testing
@testable import Billing
@testable import Platform

/// The subscription's transition table, pair by pair, and what it promises about entitlements.
@Suite struct SubscriptionStateMachineTests {
    typealias S = SubscriptionStatus
    typealias E = SubscriptionEvent

    /// Every allowed pair and where it leads; every other pair must be refused.
    static let allowed: [S: [E: S]] = [
        .trialing: [.invoicePaid: .active, .paymentFailed: .pastDue, .trialEnding: .trialing, .periodEnded: .trialing,
                    .periodEndedCanceling: .canceled, .scheduleCancel: .trialing, .unscheduleCancel: .trialing,
                    .cancelNow: .canceled, .upgrade: .trialing, .downgrade: .trialing, .paymentMethodChanged: .trialing],
        .incomplete: [.invoicePaid: .active, .paymentFailed: .incomplete, .incompleteDeadlinePassed: .incompleteExpired,
                      .cancelNow: .canceled, .paymentMethodChanged: .incomplete],
        .incompleteExpired: [:],
        .active: [.invoicePaid: .active, .paymentFailed: .pastDue, .periodEnded: .active, .periodEndedCanceling: .canceled,
                  .scheduleCancel: .active, .unscheduleCancel: .active, .cancelNow: .canceled, .pause: .paused,
                  .upgrade: .active, .downgrade: .active, .paymentMethodChanged: .active, .comp: .active],
        .pastDue: [.invoicePaid: .active, .paymentFailed: .pastDue, .retriesExhausted: .suspended, .periodEndedCanceling: .canceled,
                   .scheduleCancel: .pastDue, .unscheduleCancel: .pastDue, .cancelNow: .canceled,
                   .paymentMethodChanged: .pastDue, .comp: .active],
        .suspended: [.invoicePaid: .active, .paymentFailed: .suspended, .cancelNow: .canceled, .paymentMethodChanged: .suspended,
                     .comp: .active],
        .paused: [.resume: .active, .cancelNow: .canceled, .paymentMethodChanged: .paused],
        .canceled: [:],
    ]

    @Test func theTransitionTableIsExactlyThis() throws {
        let (permitted, refused) = try expectTransitionTable(Self.allowed) { try SubscriptionStateMachine.transition(from: $0, on: $1).0 }
        #expect(permitted == 45)
        #expect(refused == S.allCases.count * E.allCases.count - 45)
    }

    /// Listings learns every change of what a vendor may do: a transition that changes the
    /// entitlement emits it, in the same transaction.
    @Test func everyChangeOfEntitlementIsEmitted() throws {
        for state in S.allCases {
            for event in E.allCases {
                guard let (next, effects) = try? SubscriptionStateMachine.transition(from: state, on: event) else { continue }
                if state.entitlement != next.entitlement {
                    #expect(effects.contains(.emitEntitlement), "\(state) on \(event) changes the entitlement")
                }
            }
        }
    }

    @Test func terminalStatesAcceptNothingAndEveryOtherCanBeCanceled() {
        for state in S.allCases {
            let accepted = E.allCases.filter { (try? SubscriptionStateMachine.transition(from: state, on: $0)) != nil }
            if state.isTerminal {
                #expect(accepted.isEmpty, "\(state)")
            } else {
                #expect(accepted.contains(.cancelNow), "\(state) can be canceled at once")
            }
        }
    }

    @Test func whatEachStatusLetsAVendorDo() {
        #expect(S.trialing.entitlement == (true, true))
        #expect(S.active.entitlement == (true, true))
        #expect(S.pastDue.entitlement == (false, true), "grace: listings stay, no new publishing")
        for hidden in [S.incomplete, .incompleteExpired, .suspended, .paused, .canceled] {
            #expect(hidden.entitlement == (false, false), "\(hidden)")
        }
    }

    @Test func dunningAndItsNotifications() throws {
        #expect(try SubscriptionStateMachine.transition(from: .active, on: .paymentFailed).1
                == [.scheduleRetry, .emitEntitlement, .notify(.paymentFailed)])
        #expect(try SubscriptionStateMachine.transition(from: .pastDue, on: .paymentFailed).1 == [.scheduleRetry, .notify(.paymentFailed)])
        #expect(try SubscriptionStateMachine.transition(from: .pastDue, on: .retriesExhausted).1 == [.emitEntitlement, .notify(.suspended)])
        #expect(try SubscriptionStateMachine.transition(from: .suspended, on: .invoicePaid).1
                == [.clearTimers, .restartLapsedPeriod, .emitEntitlement, .notify(.reactivated)])
        #expect(try SubscriptionStateMachine.transition(from: .trialing, on: .trialEnding).1 == [.notify(.trialEnding)])
        #expect(try SubscriptionStateMachine.transition(from: .pastDue, on: .paymentMethodChanged).1 == [.retryOpenInvoice])
        #expect(try SubscriptionStateMachine.transition(from: .active, on: .downgrade).1 == [.setPendingPlan])
        #expect(try SubscriptionStateMachine.transition(from: .active, on: .upgrade).1 == [.invoiceProration, .emitEntitlement])
    }
}
