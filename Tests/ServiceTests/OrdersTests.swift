import Foundation
@testable import Orders
@testable import Platform
import Testing

@Suite struct OrderStateMachineTests {
    typealias S = OrderStatus
    typealias E = OrderEvent

    /// Every allowed pair; anything else is a 409 for a request, or a stale answer or timer.
    static let allowed: [S: [E: S]] = [
        .pendingPayment: [.stockReserved: .pendingPayment, .stockRejected: .canceled, .paymentSucceeded: .paid,
                          .paymentDeadlinePassed: .canceled, .cancelByBuyer: .canceled],
        .paid: [.stockReserved: .paid, .stockRejected: .canceled, .paymentSucceeded: .paid, .cancelByBuyer: .canceled,
                .cancelByVendor: .canceled, .ship: .shipped],
        .shipped: [.deliver: .delivered],
        .delivered: [.receive: .received, .receiptAssumed: .received, .openDispute: .disputed],
        .received: [.reviewWindowClosed: .completed, .reviewsWritten: .completed],
        .disputed: [.withdrawDispute: .delivered, .resolveByRelease: .received, .resolveByRefund: .refunded],
        .canceled: [.paymentSucceeded: .canceled],
    ]

    @Test func theTransitionTableIsExactlyThis() throws {
        let (permitted, refused) = try expectTransitionTable(Self.allowed) { try OrderStateMachine.transition(from: $0, on: $1).0 }
        #expect(permitted == 21)
        #expect(refused == S.allCases.count * E.allCases.count - 21)
    }

    @Test func aRefusalReadsAsASentence() throws {
        let problem = try #require(throws: Problem.self) { try OrderStateMachine.transition(from: .pendingPayment, on: .cancelByVendor) }
        #expect(problem.detail == "An order that is pending payment cannot be canceled by its vendor.")
    }

    /// Money taken is never kept by a canceled order: every way into `canceled` from a paid
    /// order, and a payment landing on a canceled one, refunds in full; nothing unpaid refunds.
    @Test func aCanceledOrderNeverKeepsThePayment() throws {
        for state in S.allCases {
            for event in E.allCases {
                guard let (next, effects) = try? OrderStateMachine.transition(from: state, on: event) else { continue }
                let paidFor = state == .paid || (state == .canceled && event == .paymentSucceeded)
                if next == .canceled && paidFor {
                    #expect(effects.contains(.refundInFull), "\(state) on \(event)")
                } else {
                    #expect(!effects.contains(.refundInFull), "\(state) on \(event)")
                }
            }
        }
    }

    /// Every change of status is an event for the other services (only a repeated answer that
    /// changes nothing, or a late payment refunded on a canceled order, emits none).
    @Test func everyChangeOfStatusIsAnEvent() throws {
        for state in S.allCases {
            for event in E.allCases {
                guard let (next, effects) = try? OrderStateMachine.transition(from: state, on: event) else { continue }
                let emitted = effects.contains { if case .emit = $0 { true } else { false } }
                #expect(emitted == (next != state), "\(state) on \(event)")
            }
        }
    }

    /// A status that has a timer starts it on the way in and stops it on the way out (unless the
    /// timer itself is what moved it): no order waits on a timer that can no longer apply.
    @Test func timersStartOnEntryAndStopOnExit() throws {
        let timerOf: [S: OrderTimer] = [.pendingPayment: .paymentDeadline, .delivered: .assumedReceipt, .received: .reviewWindow]
        let firedBy: [OrderTimer: E] = [.paymentDeadline: .paymentDeadlinePassed, .assumedReceipt: .receiptAssumed, .reviewWindow: .reviewWindowClosed]
        for state in S.allCases {
            for event in E.allCases {
                guard let (next, effects) = try? OrderStateMachine.transition(from: state, on: event), next != state else { continue }
                if let timer = timerOf[next] {
                    #expect(effects.contains(.schedule(timer)), "\(state) on \(event) starts \(timer)")
                }
                if let timer = timerOf[state], firedBy[timer] != event {
                    #expect(effects.contains(.cancel(timer)), "\(state) on \(event) stops \(timer)")
                }
            }
        }
    }

    @Test func finalStatesAcceptNothingButALatePaymentToRefund() {
        for state in S.allCases where state.isFinal {
            let accepted = E.allCases.filter { (try? OrderStateMachine.transition(from: state, on: $0)) != nil }
            #expect(accepted == (state == .canceled ? [.paymentSucceeded] : []), "\(state)")
        }
    }
}

@Suite struct SettlementTests {
    var generator = SplitMix64(seed: 13)

    @Test func anOrderIsPricedFromItsUnitsWithTheCommissionRoundedHalfUp() throws {
        let placed = try Settlement.placed(unitPrice: Money(amount: 45_000, currency: .eur), quantity: 2, commissionBps: 800)
        #expect(placed == Settlement(refund: .zero(.eur), commission: Money(amount: 7_200, currency: .eur), vendor: Money(amount: 82_800, currency: .eur)))
        // 8 % of 0.06 is 0.0048: half a cent or more goes to the marketplace, less does not.
        #expect(try Settlement.placed(unitPrice: Money(amount: 6, currency: .eur), quantity: 1, commissionBps: 800).commission.amount == 0)
        #expect(try Settlement.placed(unitPrice: Money(amount: 7, currency: .eur), quantity: 1, commissionBps: 800).commission.amount == 1)
    }

    @Test func aRefundTakesItsShareOfTheCommissionBackAndARefundBeyondThePaymentIsRefused() throws {
        let total = Money(amount: 10_000, currency: .eur)
        let half = try Settlement.settling(total, refund: Money(amount: 5_000, currency: .eur), commissionBps: 1_000)
        #expect(half == Settlement(refund: Money(amount: 5_000, currency: .eur), commission: Money(amount: 500, currency: .eur),
                                   vendor: Money(amount: 4_500, currency: .eur)))
        let full = try Settlement.settling(total, refund: total, commissionBps: 1_000)
        #expect(full.commission.isZero && full.vendor.isZero)
        #expect(throws: SettlementError.refundOutOfRange) { try Settlement.settling(total, refund: Money(amount: 10_001, currency: .eur), commissionBps: 1_000) }
        #expect(throws: SettlementError.refundOutOfRange) { try Settlement.settling(total, refund: Money(amount: -1, currency: .eur), commissionBps: 1_000) }
        #expect(throws: MoneyError.self) { try Settlement.settling(total, refund: Money(amount: 1, currency: .usd), commissionBps: 1_000) }
    }

    /// Whatever the price, quantity, rate and refund, the three parts add up to what the buyer
    /// paid, none is negative, and the commission never exceeds the rate's exact share by a cent.
    @Test mutating func noCentIsCreatedOrLost() throws {
        for _ in 0..<5_000 {
            let currency = [Currency.eur, .gbp, .jpy].randomElement(using: &generator)!
            let unit = Money(amount: Int64.random(in: 1...5_000_000, using: &generator), currency: currency)
            let quantity = Int.random(in: 1...50, using: &generator)
            let bps = Int.random(in: 0...10_000, using: &generator)
            let placed = try Settlement.placed(unitPrice: unit, quantity: quantity, commissionBps: bps)
            let total = placed.total
            #expect(total.amount == unit.amount * Int64(quantity))
            let refund = Money(amount: Int64.random(in: 0...total.amount, using: &generator), currency: currency)
            let settled = try Settlement.settling(total, refund: refund, commissionBps: bps)
            #expect(settled.total == total, "\(total) refund \(refund) at \(bps) bps")
            #expect(!settled.commission.isNegative && !settled.vendor.isNegative)
            let kept = Double(total.amount - refund.amount)
            #expect(abs(Double(settled.commission.amount) - kept * Double(bps) / 10_000) <= 0.5 + 1e-6)
            // Nothing refunded: the settlement is the order as placed.
            if refund.isZero { #expect(settled == placed) }
        }
    }
}

@Suite struct OrderPolicyTests {
    @Test func whoMayDoWhatToAnOrder() {
        let buyer = UUID()
        let vendor = UUID()
        typealias A = OrderPolicy.Action
        enum Outcome: Equatable { case allowed(OrderPolicy.Party), notFound, forbidden }
        let staffReads: [A: Outcome] = [.read: .allowed(.staff), .cancel: .forbidden, .ship: .forbidden, .deliver: .forbidden, .receive: .forbidden]
        let stranger: [A: Outcome] = [.read: .notFound, .cancel: .notFound, .ship: .notFound, .deliver: .notFound, .receive: .notFound]
        let callers: [(String, Principal?, [A: Outcome])] = [
            ("anonymous", nil, stranger),
            ("the buyer", Principal(userId: buyer, roles: ["buyer"]),
             [.read: .allowed(.buyer), .cancel: .allowed(.buyer), .ship: .forbidden, .deliver: .forbidden, .receive: .allowed(.buyer)]),
            ("the vendor", Principal(userId: vendor, roles: ["vendor"]),
             [.read: .allowed(.vendor), .cancel: .allowed(.vendor), .ship: .allowed(.vendor), .deliver: .allowed(.vendor), .receive: .forbidden]),
            ("another buyer", Principal(userId: UUID(), roles: ["buyer"]), stranger),
            ("another vendor", Principal(userId: UUID(), roles: ["vendor", "buyer"]), stranger),
            ("a moderator", Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd", "otp"]), staffReads),
            ("an admin", Principal(userId: UUID(), roles: ["admin"], authenticationMethods: ["pwd", "otp"]), staffReads),
            ("a moderator without a second factor", Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd"]), stranger),
        ]
        for (name, caller, expected) in callers {
            for action in A.allCases {
                let outcome: Outcome
                do {
                    outcome = .allowed(try OrderPolicy.authorize(action, buyerId: buyer, vendorId: vendor, by: caller))
                } catch OrdersError.orderNotFound {
                    outcome = .notFound
                } catch {
                    outcome = .forbidden
                }
                #expect(outcome == expected[action], "\(name) → \(action)")
            }
        }
    }
}

@Suite struct DisputeStateMachineTests {
    typealias S = DisputeStatus
    typealias E = DisputeEvent

    static let allowed: [S: [E: S]] = [
        .open: [.addEvidence: .open, .withdraw: .withdrawn, .escalate: .escalated, .resolve: .resolved],
        .escalated: [.addEvidence: .escalated, .withdraw: .withdrawn, .resolve: .resolved],
    ]

    @Test func theTransitionTableIsExactlyThis() throws {
        let (permitted, refused) = try expectTransitionTable(Self.allowed) { try DisputeStateMachine.transition(from: $0, on: $1) }
        #expect(permitted == 7)
        #expect(refused == S.allCases.count * E.allCases.count - 7)
    }

    @Test func onlyLiveDisputesAcceptAnythingAndEscalationHappensOnce() throws {
        for state in S.allCases {
            let accepted = E.allCases.filter { (try? DisputeStateMachine.transition(from: state, on: $0)) != nil }
            #expect(accepted.isEmpty == !state.isLive, "\(state)")
        }
        #expect(throws: Problem.self) { try DisputeStateMachine.transition(from: .escalated, on: .escalate) }
        let refusal = try #require(throws: Problem.self) { try DisputeStateMachine.transition(from: .resolved, on: .withdraw) }
        #expect(refusal.detail == "A dispute that is resolved cannot be withdrawn.")
    }

    /// The order's table agrees: a dispute opens only on a delivered order, and each way out of
    /// it lands the order where the contract says (withdrawn: delivered with its receipt timer
    /// again; released: received with the review window; refunded: final).
    @Test func theOrderFollowsItsDispute() throws {
        for state in OrderStatus.allCases {
            let opens = (try? OrderStateMachine.transition(from: state, on: .openDispute)) != nil
            #expect(opens == (state == .delivered), "\(state)")
        }
        let (withdrawn, withdrawEffects) = try OrderStateMachine.transition(from: .disputed, on: .withdrawDispute)
        #expect(withdrawn == .delivered && withdrawEffects.contains(.schedule(.assumedReceipt)))
        let (released, releaseEffects) = try OrderStateMachine.transition(from: .disputed, on: .resolveByRelease)
        #expect(released == .received && releaseEffects.contains(.emit(.disputeResolved)) && releaseEffects.contains(.emit(.received)))
        let (refunded, _) = try OrderStateMachine.transition(from: .disputed, on: .resolveByRefund)
        #expect(refunded == .refunded && refunded.isFinal)
    }
}

@Suite struct DisputePolicyTests {
    @Test func whoMayDoWhatToADispute() {
        let buyer = UUID()
        let vendor = UUID()
        typealias A = DisputePolicy.Action
        enum Outcome: Equatable { case allowed(DisputePolicy.Party), notFound, forbidden }
        let stranger: [A: Outcome] = [.read: .notFound, .addEvidence: .notFound, .withdraw: .notFound, .resolve: .notFound]
        func moderator(resolves: Bool) -> [A: Outcome] {
            [.read: .allowed(.moderator), .addEvidence: .allowed(.moderator), .withdraw: .forbidden, .resolve: resolves ? .allowed(.moderator) : .forbidden]
        }
        let admin: [A: Outcome] = [.read: .allowed(.admin), .addEvidence: .allowed(.admin), .withdraw: .forbidden, .resolve: .allowed(.admin)]
        for status in [DisputeStatus.open, .escalated] {
            let callers: [(String, Principal?, [A: Outcome])] = [
                ("anonymous", nil, stranger),
                ("the buyer", Principal(userId: buyer, roles: ["buyer"]),
                 [.read: .allowed(.buyer), .addEvidence: .allowed(.buyer), .withdraw: .allowed(.buyer), .resolve: .forbidden]),
                ("the vendor", Principal(userId: vendor, roles: ["vendor"]),
                 [.read: .allowed(.vendor), .addEvidence: .allowed(.vendor), .withdraw: .forbidden, .resolve: .forbidden]),
                ("another buyer", Principal(userId: UUID(), roles: ["buyer"]), stranger),
                ("another vendor", Principal(userId: UUID(), roles: ["vendor", "buyer"]), stranger),
                ("a moderator", Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd", "otp"]),
                 moderator(resolves: status == .open)),
                ("an admin", Principal(userId: UUID(), roles: ["admin"], authenticationMethods: ["pwd", "otp"]), admin),
                ("a moderator without a second factor", Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd"]), stranger),
            ]
            for (name, caller, expected) in callers {
                for action in A.allCases {
                    let outcome: Outcome
                    do {
                        outcome = .allowed(try DisputePolicy.authorize(action, buyerId: buyer, vendorId: vendor, status: status, by: caller))
                    } catch DisputesError.disputeNotFound {
                        outcome = .notFound
                    } catch {
                        outcome = .forbidden
                    }
                    #expect(outcome == expected[action], "\(name) → \(action) (\(status))")
                }
            }
        }
    }
}

@Suite struct ReviewRulesTests {
    typealias S = ReviewStatus
    typealias E = ReviewEvent

    static let allowed: [S: [E: S]] = [
        .pending: [.publish: .published],
        .published: [.reply: .published, .remove: .removed],
    ]

    @Test func theTransitionTableIsExactlyThis() throws {
        let (permitted, refused) = try expectTransitionTable(Self.allowed) { try ReviewStateMachine.transition(from: $0, on: $1) }
        #expect(permitted == 3)
        #expect(refused == S.allCases.count * E.allCases.count - 3)
    }

    /// Double blind: before publication a review is its author's alone — the party it is about
    /// cannot read it, nor can anyone else; once published, everyone; once removed, its author and staff.
    @Test func whoSeesAReviewIsTheDoubleBlindRule() {
        let author = UUID(), other = UUID()
        let viewers: [(String, Principal?)] = [
            ("anonymous", nil),
            ("its author", Principal(userId: author, roles: ["buyer"])),
            ("the other party", Principal(userId: other, roles: ["vendor"])),
            ("a stranger", Principal(userId: UUID(), roles: ["buyer"])),
            ("a moderator", Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd", "otp"])),
        ]
        let expected: [ReviewStatus: Set<String>] = [
            .pending: ["its author"],
            .published: ["anonymous", "its author", "the other party", "a stranger", "a moderator"],
            .removed: ["its author", "a moderator"],
        ]
        for status in ReviewStatus.allCases {
            let seeing = Set(viewers.filter { ReviewVisibility.visible(status: status, authorId: author, to: $0.1) }.map(\.0))
            #expect(seeing == expected[status], "\(status)")
        }
    }

    /// Both are published together: when the second is written, or when the window closes with
    /// at least one; never one alone while the other may still come.
    @Test func reviewsArePublishedTogetherOrWhenTheWindowCloses() {
        #expect(!ReviewVisibility.publishes(written: 0, windowClosed: false))
        #expect(!ReviewVisibility.publishes(written: 1, windowClosed: false))
        #expect(ReviewVisibility.publishes(written: 2, windowClosed: false))
        #expect(!ReviewVisibility.publishes(written: 0, windowClosed: true))
        #expect(ReviewVisibility.publishes(written: 1, windowClosed: true))
        #expect(ReviewVisibility.publishes(written: 2, windowClosed: true))
        let (next, effects) = try! OrderStateMachine.transition(from: .received, on: .reviewsWritten)
        #expect(next == .completed && effects == [.cancel(.reviewWindow), .emit(.completed)])
    }
}
