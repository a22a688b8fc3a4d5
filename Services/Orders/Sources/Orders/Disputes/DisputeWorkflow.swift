import Contracts
import Foundation
import Platform

/// A dispute timer's payload.
struct DisputeTimerPayload: Codable, Sendable {
    var disputeId: UUID
}

/// What a party writes as evidence.
struct EvidenceInput: Sendable {
    var text: String
    var attachments: [String]
}

/// The dispute's process. Every change locks the order, then the dispute; asks the dispute's
/// table and the order's; and in the same transaction writes both rows, the order's history, the
/// escalation timer and the events (through the order's transition, so a dispute's events leave
/// with the order's). Billing freezes, unfreezes and splits the money on those events.
struct DisputeWorkflow: Sendable {
    static let escalation = JobKind<DisputeTimerPayload>("orders.dispute-escalation")
    /// How long a dispute waits for a moderator before the admins are asked.
    static let escalationDelay: TimeInterval = 14 * 86_400

    let orders: OrderWorkflow
    let disputes = DisputeRepository()
    var orderRows: OrderRepository { orders.orders }

    /// The buyer disputes a delivered order: the order is `disputed` (409 from any other status).
    func open(order orderId: UUID, reason: DisputeReason, description: String, by caller: Principal, in tx: Transaction) async throws -> DisputeView {
        guard let order = try await orderRows.lock(orderId, in: tx) else { throw OrdersError.orderNotFound }
        guard try OrderPolicy.authorize(.read, buyerId: order.buyerId, vendorId: order.vendorId, by: caller) == .buyer else {
            throw DisputesError.notTheBuyer
        }
        let now = tx.now
        let dispute = DisputeRecord(
            id: UUID.v7(now: now), orderId: order.id, buyerId: order.buyerId, vendorId: order.vendorId, status: .open, reason: reason,
            description: description, currency: order.total.currency, resolution: nil, chargeback: nil, version: 1, openedAt: now,
            escalatedAt: nil, closedAt: nil, updatedAt: now)
        _ = try await orders.apply(.openDispute, to: order, input: OrderInput(actorId: caller.userId, note: "dispute \(dispute.id.lowercased)",
                                                                             dispute: dispute), in: tx)
        try await disputes.insert(dispute, in: tx)
        try await Obligations.open("dispute", reference: dispute.id, for: [order.buyerId, order.vendorId], service: OrdersService.name, in: tx)
        try await tx.schedule(Self.escalation, key: dispute.id.lowercased, payload: DisputeTimerPayload(disputeId: dispute.id),
                              at: now.addingTimeInterval(Self.escalationDelay))
        return DisputeView(dispute, evidence: [])
    }

    /// A party's (or the desk's) read: staff reads are audited.
    func read(_ id: UUID, by caller: Principal, in tx: Transaction) async throws -> DisputeView {
        guard let dispute = try await disputes.load(id, in: tx) else { throw DisputesError.disputeNotFound }
        let party = try DisputePolicy.authorize(.read, buyerId: dispute.buyerId, vendorId: dispute.vendorId, status: dispute.status, by: caller)
        if party == .moderator || party == .admin {
            try await StaffReads.record(caller, read: "dispute", id: id, in: tx)
        }
        return DisputeView(dispute, evidence: try await disputes.evidence(of: id, in: tx))
    }

    func addEvidence(_ input: EvidenceInput, to id: UUID, by caller: Principal, in tx: Transaction) async throws -> DisputeView {
        let (_, dispute, party) = try await locked(id, for: .addEvidence, by: caller, in: tx)
        _ = try DisputeStateMachine.transition(from: dispute.status, on: .addEvidence)
        guard try await disputes.evidenceCount(of: id, in: tx) < DisputeRepository.maximumEvidence else {
            throw Problem(.conflict, "This dispute holds \(DisputeRepository.maximumEvidence) pieces of evidence, the most it takes.",
                          typeSlug: "evidence-limit-reached")
        }
        try await disputes.addEvidence(EvidenceView(id: UUID.v7(now: tx.now), authorId: caller.userId, authorRole: "\(party)",
                                                    text: input.text, attachments: input.attachments, createdAt: tx.now), to: id, in: tx)
        let saved = try await disputes.update(dispute, in: tx)
        return DisputeView(saved, evidence: try await disputes.evidence(of: id, in: tx))
    }

    /// The buyer takes the dispute back: the order is `delivered` again, with a fresh 14 days to
    /// assumed receipt.
    func withdraw(_ id: UUID, by caller: Principal, in tx: Transaction) async throws -> DisputeView {
        let (order, current, _) = try await locked(id, for: .withdraw, by: caller, in: tx)
        var dispute = current
        dispute.status = try DisputeStateMachine.transition(from: current.status, on: .withdraw)
        guard current.chargeback?.status != "open" else { throw DisputesError.chargebackOpen }
        dispute.closedAt = tx.now
        _ = try await orders.apply(.withdrawDispute, to: order, input: OrderInput(actorId: caller.userId, note: "dispute \(id.lowercased)",
                                                                                 dispute: dispute), in: tx)
        try await tx.cancel(Self.escalation, key: id.lowercased)
        try await Obligations.close("dispute", reference: id, for: [order.buyerId, order.vendorId], service: OrdersService.name, in: tx)
        let saved = try await disputes.update(dispute, in: tx)
        return DisputeView(saved, evidence: try await disputes.evidence(of: id, in: tx))
    }

    /// A moderator's (or, once escalated, an admin's) decision. `refund` without an amount gives
    /// back all that remains of the payment; with one, that part, the rest released.
    func resolve(_ id: UUID, outcome: DisputeOutcome, refund: Money?, note: String, by caller: Principal, in tx: Transaction) async throws -> DisputeView {
        let (order, current, _) = try await locked(id, for: .resolve, by: caller, in: tx)
        var dispute = current
        dispute.status = try DisputeStateMachine.transition(from: current.status, on: .resolve)
        guard current.chargeback?.status != "open" else { throw DisputesError.chargebackOpen }
        let remaining = Money(amount: order.total.amount - order.refunded.amount, currency: order.total.currency)
        var refunded: Int64 = 0
        if outcome == .refund {
            if let refund, refund.currency != remaining.currency {
                throw Problem.validation([FieldError("refundAmount.currency", "must be \(remaining.currency.code), the order's currency")])
            }
            refunded = refund?.amount ?? remaining.amount
            guard refunded <= remaining.amount else { throw DisputesError.refundTooLarge(remaining: remaining) }
        } else if refund != nil {
            throw Problem.validation([FieldError("refundAmount", "is only given with the outcome refund")])
        }
        dispute.resolution = DisputeRecord.Resolution(outcome: outcome, refundAmount: refunded, note: note, resolvedBy: caller.userId)
        dispute.closedAt = tx.now
        let event: OrderEvent = outcome == .release ? .resolveByRelease : .resolveByRefund
        _ = try await orders.apply(event, to: order, input: OrderInput(actorId: caller.userId, note: Self.summary(dispute.resolution!, remaining.currency),
                                                                      dispute: dispute), in: tx)
        try await tx.cancel(Self.escalation, key: id.lowercased)
        try await Obligations.close("dispute", reference: id, for: [order.buyerId, order.vendorId], service: OrdersService.name, in: tx)
        let saved = try await disputes.update(dispute, in: tx)
        return DisputeView(saved, evidence: try await disputes.evidence(of: id, in: tx))
    }

    /// The timeline's words for a decision.
    static func summary(_ r: DisputeRecord.Resolution, _ currency: Currency) -> String {
        switch r.outcome {
        case .release: "dispute resolved: released to the vendor. \(r.note)"
        case .refund: "dispute resolved: \(Money(amount: r.refundAmount, currency: currency)) back to the buyer. \(r.note)"
        }
    }

    /// The escalation timer: a dispute still open after 14 days becomes the admins'.
    func escalate(_ timer: DisputeTimerPayload, in tx: Transaction) async throws {
        guard let unlocked = try await disputes.load(timer.disputeId, in: tx),
              let order = try await orderRows.lock(unlocked.orderId, in: tx),
              var dispute = try await disputes.load(timer.disputeId, lock: true, in: tx),
              let next = try? DisputeStateMachine.transition(from: dispute.status, on: .escalate) else { return }
        dispute.status = next
        dispute.escalatedAt = tx.now
        _ = try await disputes.update(dispute, in: tx)
        try await orderRows.record(OrderChange(status: order.status.rawValue, at: tx.now, event: "dispute escalated", actorId: nil,
                                               note: "dispute \(dispute.id.lowercased) unresolved after 14 days: an admin decides it"), of: order.id, in: tx)
        try await Outbox.emit(DisputeEvents.escalated, DisputeChangedV1(
            disputeId: dispute.id, orderId: order.id, listingId: order.listingId, buyerId: order.buyerId, vendorId: order.vendorId, at: tx.now), in: tx)
    }

    // MARK: Chargebacks

    /// The buyer's bank disputes the payment: joined to the order's live dispute (whose decision
    /// now waits for the bank's), or noted in the order's timeline when there is none.
    func chargebackOpened(_ chargeback: ChargebackV1, in tx: Transaction) async throws {
        guard let order = try await orderRows.lock(chargeback.orderId, in: tx) else { return orders.unknown(chargeback.orderId, "payment.chargeback_opened", tx) }
        let money = Money(amount: chargeback.amount, currency: order.total.currency)
        if var dispute = try await disputes.live(of: order.id, in: tx) {
            guard dispute.chargeback?.id != chargeback.chargebackId else { return }
            dispute.chargeback = DisputeRecord.Chargeback(id: chargeback.chargebackId, amount: chargeback.amount, reason: chargeback.reason, status: "open")
            _ = try await disputes.update(dispute, in: tx)
        }
        try await orderRows.record(OrderChange(status: order.status.rawValue, at: tx.now, event: "charged back", actorId: nil,
                                               note: "the buyer's bank disputes \(money) (\(chargeback.reason))"), of: order.id, in: tx)
    }

    /// The bank decided. Lost: the money went back to the buyer through the bank, so the joined
    /// dispute is resolved as a refund of that much (billing moved the money already). Won: the
    /// dispute is the desk's to decide again.
    func chargebackClosed(_ chargeback: ChargebackV1, in tx: Transaction) async throws {
        guard let order = try await orderRows.lock(chargeback.orderId, in: tx) else { return orders.unknown(chargeback.orderId, "payment.chargeback_closed", tx) }
        guard var dispute = try await disputes.joined(chargeback: chargeback.chargebackId, of: order.id, in: tx),
              dispute.chargeback?.status == "open" else { return }
        dispute.chargeback?.status = chargeback.status
        if chargeback.status == "lost", let next = try? DisputeStateMachine.transition(from: dispute.status, on: .resolve) {
            let refunded = min(chargeback.amount, order.total.amount - order.refunded.amount)
            dispute.status = next
            dispute.closedAt = tx.now
            dispute.resolution = DisputeRecord.Resolution(outcome: .refund, refundAmount: refunded,
                                                          note: "Decided by the buyer's bank: the chargeback was lost.", resolvedBy: nil)
            var o = order
            o.refunded = Money(amount: order.refunded.amount + refunded, currency: order.total.currency)
            let updated = try await orderRows.update(o, from: order, in: tx)
            _ = try await orders.apply(.resolveByRefund, to: updated, input: OrderInput(note: Self.summary(dispute.resolution!, order.total.currency),
                                                                                       dispute: dispute), in: tx)
            try await tx.cancel(Self.escalation, key: dispute.id.lowercased)
            try await Obligations.close("dispute", reference: dispute.id, for: [order.buyerId, order.vendorId], service: OrdersService.name, in: tx)
        }
        _ = try await disputes.update(dispute, in: tx)
    }

    // MARK: Locking

    /// The dispute's order and the dispute, locked in that order, with the caller's part checked.
    private func locked(_ id: UUID, for action: DisputePolicy.Action, by caller: Principal,
                        in tx: Transaction) async throws -> (OrderRecord, DisputeRecord, DisputePolicy.Party) {
        guard let unlocked = try await disputes.load(id, in: tx) else { throw DisputesError.disputeNotFound }
        try DisputePolicy.authorize(.read, buyerId: unlocked.buyerId, vendorId: unlocked.vendorId, status: unlocked.status, by: caller)
        guard let order = try await orderRows.lock(unlocked.orderId, in: tx),
              let dispute = try await disputes.load(id, lock: true, in: tx) else { throw DisputesError.disputeNotFound }
        let party = try DisputePolicy.authorize(action, buyerId: dispute.buyerId, vendorId: dispute.vendorId, status: dispute.status, by: caller)
        return (order, dispute, party)
    }
}
