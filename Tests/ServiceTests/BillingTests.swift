import Foundation
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

/// Proration to the second: whatever the dates and prices, no minor unit is created or lost.
@Suite struct ProrationTests {
    var generator = SplitMix64(seed: 2026)

    @Test mutating func aPeriodCutAnywhereAddsUpToThePriceExactly() throws {
        for _ in 0..<2_000 {
            let price = Money(amount: Int64.random(in: 0...10_000_000, using: &generator), currency: .eur)
            let start = Date(timeIntervalSince1970: Double(Int64.random(in: 1_600_000_000...1_900_000_000, using: &generator)))
            let end = start.addingTimeInterval(Double(Int64.random(in: 1...400 * 86_400, using: &generator)))
            // Any number of cuts (plan changes) in the period, in order.
            let length = end.timeIntervalSince(start)
            let cuts = (0..<Int.random(in: 0...6, using: &generator)).map { _ in start.addingTimeInterval(Double.random(in: 0...length, using: &generator).rounded(.down)) }.sorted()
            let points = [start] + cuts + [end]
            var total: Int64 = 0
            for (from, to) in zip(points, points.dropFirst()) {
                let stretch = Proration.earned(price, periodStart: start, periodEnd: end, at: to).amount
                    - Proration.earned(price, periodStart: start, periodEnd: end, at: from).amount
                #expect(stretch >= 0)
                total += stretch
            }
            #expect(total == price.amount, "\(price.amount) over \(points.count - 1) stretches")
            if let cut = cuts.first {
                let used = Proration.earned(price, periodStart: start, periodEnd: end, at: cut)
                let unused = Proration.unused(price, periodStart: start, periodEnd: end, at: cut)
                #expect(used.amount + unused.amount == price.amount)
                #expect(unused.amount >= 0 && unused.amount <= price.amount)
            }
        }
    }

    @Test mutating func anUpgradeNeverCostsMoreThanTheNewPlanNorLessThanNothing() throws {
        for _ in 0..<2_000 {
            let old = Int64.random(in: 0...1_000_000, using: &generator)
            let new = old + Int64.random(in: 1...1_000_000, using: &generator)
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            let end = start.addingTimeInterval(Double(Int64.random(in: 1...366 * 86_400, using: &generator)))
            let at = start.addingTimeInterval(Double.random(in: 0...end.timeIntervalSince(start), using: &generator))
            let (credit, debit) = try Proration.change(from: Money(amount: old, currency: .gbp), to: Money(amount: new, currency: .gbp),
                                                       periodStart: start, periodEnd: end, at: at)
            #expect(credit.amount <= old && debit.amount <= new)
            #expect(debit.amount - credit.amount >= 0, "upgrading never refunds")
            #expect(debit.amount - credit.amount <= new - old, "nor costs more than the difference for a whole period")
        }
        #expect(throws: MoneyError.self) {
            try Proration.change(from: Money(amount: 1, currency: .gbp), to: Money(amount: 2, currency: .eur),
                                 periodStart: Date(), periodEnd: Date().addingTimeInterval(10), at: Date())
        }
    }

    @Test func halfwayThroughIsHalfThePriceToTheMinorUnit() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let end = start.addingTimeInterval(30 * 86_400)
        let middle = start.addingTimeInterval(15 * 86_400)
        #expect(Proration.unused(Money(amount: 2900, currency: .eur), periodStart: start, periodEnd: end, at: middle).amount == 1450)
        #expect(Proration.unused(Money(amount: 2901, currency: .eur), periodStart: start, periodEnd: end, at: middle).amount == 1451,
                "the odd unit stays with the part not yet earned")
        #expect(Proration.unused(Money(amount: 2900, currency: .eur), periodStart: start, periodEnd: end, at: end.addingTimeInterval(5)).amount == 0)
        #expect(Proration.unused(Money(amount: 2900, currency: .eur), periodStart: start, periodEnd: end, at: start.addingTimeInterval(-5)).amount == 2900)
    }
}

/// The billing policy as a matrix: role × owner × action.
@Suite struct BillingPolicyTests {
    @Test func whoMayDoWhatToASubscription() {
        let vendor = UUID()
        typealias A = BillingPolicy.Action
        enum Outcome: Equatable { case allowed, notFound, forbidden }
        let callers: [(String, Principal?, [A: Outcome])] = [
            ("anonymous", nil, [.read: .notFound, .cancel: .notFound, .manage: .notFound, .comp: .notFound]),
            ("the owner", Principal(userId: vendor, roles: ["vendor"]), [.read: .allowed, .cancel: .allowed, .manage: .allowed, .comp: .forbidden]),
            ("another vendor", Principal(userId: UUID(), roles: ["vendor"]), [.read: .notFound, .cancel: .notFound, .manage: .notFound, .comp: .notFound]),
            ("a buyer", Principal(userId: UUID(), roles: ["buyer"]), [.read: .notFound, .cancel: .notFound, .manage: .notFound, .comp: .notFound]),
            ("a moderator", Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd", "otp"]),
             [.read: .notFound, .cancel: .notFound, .manage: .notFound, .comp: .notFound]),
            ("an admin", Principal(userId: UUID(), roles: ["admin"], authenticationMethods: ["pwd", "otp"]),
             [.read: .allowed, .cancel: .allowed, .manage: .forbidden, .comp: .allowed]),
            ("an admin without a second factor", Principal(userId: UUID(), roles: ["admin"], authenticationMethods: ["pwd"]),
             [.read: .notFound, .cancel: .notFound, .manage: .notFound, .comp: .notFound]),
            ("the owner's id without the vendor role", Principal(userId: vendor, roles: ["buyer"]),
             [.read: .notFound, .cancel: .notFound, .manage: .notFound, .comp: .notFound]),
        ]
        for (name, caller, expected) in callers {
            for action in A.allCases {
                let outcome: Outcome
                do {
                    try BillingPolicy.authorize(action, vendorId: vendor, by: caller)
                    outcome = .allowed
                } catch BillingError.subscriptionNotFound {
                    outcome = .notFound
                } catch {
                    outcome = .forbidden
                }
                #expect(outcome == expected[action], "\(name) → \(action)")
            }
        }
    }
}

@Suite struct DunningScheduleTests {
    @Test func eightTriesWithinFourteenDaysByDefault() {
        let schedule = DunningSchedule.standard
        #expect(schedule.tries == 8)
        let first = Date(timeIntervalSince1970: 1_800_000_000)
        var now = first
        var retries: [Double] = []
        while let next = schedule.nextRetry(after: now, firstFailure: first) {
            retries.append(next.timeIntervalSince(first) / 86_400)
            now = next
        }
        #expect(retries == [1, 2, 3, 5, 7, 10, 14])
    }

    @Test func theScheduleIsConfigurableAndCheckedAtStart() throws {
        #expect(try DunningSchedule.load(ConfigReader(values: ["BILLING_DUNNING_SCHEDULE": "30m,2h,1d"])).offsets == [1_800, 7_200, 86_400])
        #expect(try DunningSchedule.load(ConfigReader(values: [:])) == .standard)
        for bad in ["1d,1d", "2d,1d", "x", "1w", "-1d", "0d"] {
            #expect(throws: ConfigError.self, "\(bad)") { try DunningSchedule.load(ConfigReader(values: ["BILLING_DUNNING_SCHEDULE": bad])) }
        }
    }
}

/// The webhook signature scheme (`Stripe-Signature`'s): checked over the raw body, in a tolerance.
@Suite struct WebhookSignatureTests {
    let signature = WebhookSignature(secret: "whsec_test")
    let body = Array(#"{"id":"evt_1"}"#.utf8)

    @Test func aSignedBodyVerifiesAndAnythingElseIsRefused() throws {
        let now = Date()
        try signature.verify(body: body, header: signature.header(for: body, at: now), now: now)
        // A rolled secret: several v1 values, one of them right.
        let rolled = signature.header(for: body, at: now) + ",v1=" + String(repeating: "ab", count: 32)
        try signature.verify(body: body, header: rolled, now: now)
        let header = signature.header(for: body, at: now)
        #expect(throws: ProviderError.self) { try signature.verify(body: body + [0x20], header: header, now: now) }
        #expect(throws: ProviderError.self) { try WebhookSignature(secret: "whsec_other").verify(body: body, header: header, now: now) }
        #expect(throws: ProviderError.self) { try signature.verify(body: body, header: header, now: now.addingTimeInterval(301)) }
        #expect(throws: ProviderError.self) { try signature.verify(body: body, header: nil, now: now) }
        #expect(throws: ProviderError.self) { try signature.verify(body: body, header: "t=abc,v1=00", now: now) }
    }

    @Test func theSchemeIsHMACSHA256OverTimestampDotBody() throws {
        // Computed independently (Python: hmac.new(b"whsec_test", b"1700000000." + body, sha256)).
        let header = signature.header(for: body, at: Date(timeIntervalSince1970: 1_700_000_000))
        #expect(header == "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925")
    }
}

@Suite struct OrderPaymentStateMachineTests {
    typealias S = OrderPaymentStatus
    typealias E = OrderPaymentEvent

    static let allowed: [S: [E: S]] = [
        .awaitingPayment: [.paymentSucceeded: .held, .paymentFailed: .awaitingPayment, .orderCanceled: .canceled],
        .canceled: [.paymentSucceeded: .refunded],
        .held: [.orderCanceled: .refunded, .orderReceived: .released, .disputeOpened: .frozen, .refundPart: .held, .refundRest: .refunded,
                .chargebackOpened: .contested],
        .frozen: [.disputeWithdrawn: .held, .resolvedByRelease: .released, .resolvedByFullRefund: .refunded, .resolvedBySplit: .settled,
                  .chargebackOpened: .contested],
        .released: [.refundPart: .released, .refundRest: .released, .chargebackOpened: .contestedAfterRelease],
        .contested: [.orderReceived: .contested, .orderCanceled: .contested, .chargebackWon: .held, .chargebackLost: .chargedBack],
        .contestedAfterRelease: [.chargebackWon: .released, .chargebackLost: .chargedBack],
    ]

    @Test func theTransitionTableIsExactlyThis() throws {
        let (permitted, refused) = try expectTransitionTable(Self.allowed) { try OrderPaymentStateMachine.transition(from: $0, on: $1).0 }
        #expect(permitted == 24)
        #expect(refused == S.allCases.count * E.allCases.count - 24)
    }

    /// Walks every sequence of events from a new payment (up to eight steps) and follows a
    /// payment of 64 units the way the workflow moves it (a part is half of what remains):
    /// escrow and disputed escrow never go below zero, refunds never exceed what was paid, money
    /// is captured at most once, and when the payment is final escrow and disputed escrow are
    /// both empty: every unit taken in went to the vendor, the commission or back to the buyer.
    @Test func everyPathEndsWithEscrowEmptyAndNoMoreRefundedThanPaid() throws {
        struct Units { var paid = 0, escrow = 0, disputed = 0, released = 0, refunded = 0 }
        var finals = 0
        func walk(_ state: S, _ units: Units, depth: Int) throws {
            if state.isFinal {
                finals += 1
                #expect(units.escrow == 0 && units.disputed == 0, "\(state)")
                #expect(units.released + units.refunded == units.paid, "\(state)")
            }
            guard depth < 8 else { return }
            for event in E.allCases {
                guard let (next, effects) = try? OrderPaymentStateMachine.transition(from: state, on: event) else { continue }
                var u = units
                // As the workflow takes it: of what has not been refunded yet (`OrderPayment.remaining`).
                let remaining = 64 - u.refunded
                let refund = event == .refundPart || event == .resolvedBySplit ? remaining / 2 : remaining
                for effect in effects {
                    switch effect {
                    case .post(.captured): u.paid += 64; u.escrow += 64
                    case .post(.released): u.released += u.escrow; u.escrow = 0
                    case .post(.refunded): u.escrow -= refund; u.refunded += refund
                    case .post(.settled): u.refunded += refund; u.released += u.escrow - refund; u.escrow = 0
                    case .post(.frozen): u.disputed += u.escrow; u.escrow = 0
                    case .post(.unfrozen): u.escrow += u.disputed; u.disputed = 0
                    case .post(.clawedBack): u.released -= refund; u.refunded += refund
                    // A chargeback takes what has not been refunded; lost, the buyer's bank has it.
                    case .post(.chargebackFrozen): u.escrow -= remaining; u.disputed += remaining
                    case .post(.chargebackReturned): u.disputed -= remaining; u.escrow += remaining
                    case .post(.chargebackRecalled): u.released -= remaining; u.disputed += remaining
                    case .post(.chargebackRestored): u.disputed -= remaining; u.released += remaining
                    case .post(.chargebackLost): u.disputed -= remaining; u.refunded += remaining
                    case .refundInFull, .refundPart, .cancelIntent, .emit, .deferFact, .deferDispute, .replayDeferred: break
                    }
                    #expect(u.escrow >= 0 && u.disputed >= 0 && u.released >= 0, "\(state) on \(event)")
                }
                #expect(u.paid <= 64, "a payment is captured once")
                #expect(u.refunded <= u.paid, "\(state) on \(event)")
                try walk(next, u, depth: depth + 1)
            }
        }
        try walk(.awaitingPayment, Units(), depth: 0)
        #expect(finals > 0)
    }

    @Test func finalStatesAcceptNothingButALatePaymentAnAdminsRefundOrAChargeback() {
        for state in S.allCases where state.isFinal {
            let accepted = E.allCases.filter { (try? OrderPaymentStateMachine.transition(from: state, on: $0)) != nil }
            let expected: [E] = switch state {
            case .canceled: [.paymentSucceeded]
            case .released: [.refundPart, .refundRest, .chargebackOpened]
            default: []
            }
            #expect(accepted == expected, "\(state)")
        }
    }
}

@Suite struct EscrowSplitTests {
    @Test func theCommissionIsTheOrdersRateRoundedHalfUpAndThePartsAddUp() {
        // 8 % of 900.00 is 72.00; of a 100.00 refund, 8.00.
        #expect(EscrowSplit.commission(of: 90_000, amount: 90_000, commission: 7_200) == 7_200)
        #expect(EscrowSplit.commission(of: 10_000, amount: 90_000, commission: 7_200) == 800)
        // 7.5 % of 0.10 is 0.0075: 0.01 (a half unit goes to the marketplace), of 0.01 nothing.
        #expect(EscrowSplit.commission(of: 10, amount: 1_000, commission: 75) == 1)
        #expect(EscrowSplit.commission(of: 1, amount: 1_000, commission: 75) == 0)
        #expect(EscrowSplit.commission(of: 0, amount: 1_000, commission: 75) == 0)
        // Amounts whose product overflows 64 bits.
        #expect(EscrowSplit.commission(of: 9_000_000_000_000, amount: 9_000_000_000_000, commission: 4_000_000_000_000) == 4_000_000_000_000)
        for amount in [1, 7, 99, 1_000, 12_345, 90_000] as [Int64] {
            for bps in [0, 1, 800, 1_250, 5_000, 10_000] as [Int64] {
                let commission = (amount * bps + 5_000) / 10_000
                for divided in Set([0, 1, amount / 3, amount / 2, amount - 1, amount].filter { $0 >= 0 }) {
                    let (vendor, share) = EscrowSplit.split(divided, amount: amount, commission: commission, stated: nil)
                    #expect(vendor + share == divided && vendor >= 0 && share >= 0 && share <= commission, "\(divided) of \(amount) at \(bps)")
                }
            }
        }
    }

    @Test func whatOrdersStatedIsPostedWhenItAddsUpAndOtherwiseTheRate() {
        #expect(EscrowSplit.split(60_000, amount: 90_000, commission: 7_200, stated: (55_200, 4_800)) == (55_200, 4_800))
        // A stated split that does not add up to what leaves escrow is not trusted.
        #expect(EscrowSplit.split(60_000, amount: 90_000, commission: 7_200, stated: (55_000, 4_800)) == (55_200, 4_800))
        #expect(EscrowSplit.split(60_000, amount: 90_000, commission: 7_200, stated: (60_001, -1)) == (55_200, 4_800))
    }
}
