import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

struct OrderIntent: Codable, Sendable {
    var orderId: UUID
}

struct OrderRefundJob: Codable, Sendable {
    var refundId: UUID
}

struct ChargebackReconciliation: Codable, Sendable {
    var disputeId: String
}

/// A buyer's payment for an order as billing holds it (a row of `order_payments`).
struct OrderPayment: Sendable, Equatable {
    var orderId: UUID
    var buyerId: UUID
    var vendorId: UUID
    /// What the buyer pays, and the marketplace's commission on it (orders priced both).
    var amount: Money
    var commission: Int64
    /// What the provider kept (known once paid).
    var fee: Int64
    /// What went (or is going) back to the buyer so far.
    var refunded: Int64
    var status: OrderPaymentStatus
    var intentId: String?
    var intentStatus: String?
    var releasedAt: Date?
    var version: Int

    /// What has not gone back to the buyer.
    var remaining: Int64 { amount.amount - refunded }

    static let columns = """
        order_id, buyer_id, vendor_id, amount, commission, currency::text, fee, refunded, status, intent_id, intent_status, released_at, version
        """

    static func decode(_ rows: PostgresRowSequence) async throws -> [OrderPayment] {
        var payments: [OrderPayment] = []
        for try await (order, buyer, vendor, amount, commission, currency, fee, refunded, status, intent, intentStatus, released, version)
            in rows.decode((UUID, UUID, UUID, Int64, Int64, String, Int64, Int64, String, String?, String?, Date?, Int).self) {
            payments.append(OrderPayment(
                orderId: order, buyerId: buyer, vendorId: vendor, amount: try Money(amount: amount, currencyCode: currency), commission: commission,
                fee: fee, refunded: refunded, status: OrderPaymentStatus(rawValue: status) ?? .awaitingPayment, intentId: intent,
                intentStatus: intentStatus, releasedAt: released, version: version))
        }
        return payments
    }
}

/// How the money leaving escrow divides between the vendor and the marketplace's commission: the
/// amounts orders stated when they add up, otherwise the order's commission rate applied to
/// what is divided (rounded half up, so a half unit goes to the marketplace). No unit is lost:
/// the two parts always add up to what is divided.
enum EscrowSplit {
    /// `divided` (at most the payment's `amount`) shared at the order's rate `commission / amount`.
    static func commission(of divided: Int64, amount: Int64, commission: Int64) -> Int64 {
        guard amount > 0, divided > 0 else { return 0 }
        let product = commission.multipliedFullWidth(by: divided)
        let (quotient, remainder) = amount.dividingFullWidth(product)
        return min(divided, quotient + (remainder * 2 >= amount ? 1 : 0))
    }

    /// The vendor's part and the commission of `divided`, preferring what orders stated.
    static func split(_ divided: Int64, amount: Int64, commission: Int64, stated: (vendor: Int64, commission: Int64)?) -> (vendor: Int64, commission: Int64) {
        if let stated, stated.vendor >= 0, stated.commission >= 0, stated.vendor + stated.commission == divided { return stated }
        let share = Self.commission(of: divided, amount: amount, commission: commission)
        return (divided - share, share)
    }
}

/// Buyers' payments for orders: the marketplace's money. `order.placed` states what the buyer
/// owes; billing records it and a job asks the provider for an intent (key: the order), which
/// `payment.intent_created` hands to orders for the buyer's client to confirm. The provider's
/// word on the intent (a webhook, re-read) and the order's facts (`order.canceled`,
/// `order.received`) then move the payment through `OrderPaymentStateMachine`, each transition
/// posting its ledger movements, asking for refunds and announcing a success in one transaction.
struct OrderPayments: Sendable {
    /// Creates an order's payment intent at the provider; key: the order id.
    static let createIntent = JobKind<OrderIntent>("billing.create-order-intent", maxAttempts: 12, backoff: .seconds(1), maximumBackoff: .seconds(300))
    /// Cancels the intent of an order that ended unpaid; key: the order id.
    static let cancelIntent = JobKind<OrderIntent>("billing.cancel-order-intent", maxAttempts: 12, backoff: .seconds(5), maximumBackoff: .seconds(900))
    /// Asks the provider for one refund; key: the refund's id (and the provider's idempotency key).
    static let refund = JobKind<OrderRefundJob>("billing.refund-order-payment", maxAttempts: 20, backoff: .seconds(5), maximumBackoff: .seconds(3600))
    /// Re-reads a dispute after a webhook; key: the dispute id.
    static let reconcileChargeback = JobKind<ChargebackReconciliation>("billing.reconcile-chargeback", maxAttempts: 12, backoff: .seconds(1),
                                                                       maximumBackoff: .seconds(900))

    let provider: any PaymentProvider
    let ledger: Ledger

    /// Records the payment an order needs, once: a redelivered `order.placed` (even under a new
    /// event id) finds the row. An event from before orders stated prices is not one to charge.
    /// A provider event about this order's intent that came first is re-read now.
    func placed(_ order: OrderPlacedV1, in tx: Transaction) async throws {
        guard let vendor = order.vendorId, let total = order.totalAmount, total > 0, let commission = order.commissionAmount,
              let code = order.currency, let currency = try? Currency(code: code) else {
            tx.logger.warning("order.placed without a price; nothing to charge", metadata: ["order.id": "\(order.orderId.lowercased)"])
            return
        }
        let inserted = try await tx.first("""
            INSERT INTO order_payments (order_id, buyer_id, vendor_id, amount, commission, currency, status, provider, created_at, updated_at)
            VALUES (\(order.orderId), \(order.buyerId), \(vendor), \(total), \(min(max(commission, 0), total)), \(currency.code),
                    \(OrderPaymentStatus.awaitingPayment.rawValue), \(provider.name), \(tx.now), \(tx.now))
            ON CONFLICT (order_id) DO NOTHING
            RETURNING true
            """, as: Bool.self) == true
        guard inserted else { return }
        try await tx.schedule(Self.createIntent, key: order.orderId.lowercased, payload: OrderIntent(orderId: order.orderId), at: tx.now)
        for try await intentId in try await tx.query("""
            DELETE FROM early_intent_events WHERE order_id = \(order.orderId) RETURNING intent_id
            """).decode(String.self) {
            try await tx.schedule(PaymentCollection.reconcileIntent, key: intentId, payload: IntentReconciliation(intentId: intentId), at: tx.now)
        }
    }

    /// The job: the provider's intent for the order (the same one on a retry), stored and announced.
    func createIntent(for orderId: UUID, in tx: Transaction) async throws {
        guard let payment = try await lock(orderId, in: tx), payment.intentId == nil else { return }
        // An order canceled before its intent was made needs none.
        guard payment.status == .awaitingPayment else { return }
        let intent = try await provider.createPaymentIntent(PaymentIntentRequest(
            amount: payment.amount, description: "Order \(orderId.lowercased)",
            metadata: ["order_id": orderId.lowercased, "buyer_id": payment.buyerId.lowercased], transferGroup: orderId.lowercased),
            idempotencyKey: "order:\(orderId.lowercased):intent")
        try await tx.query("""
            UPDATE order_payments SET intent_id = \(intent.id), client_secret = \(intent.clientSecret), intent_status = \(intent.status.rawValue),
                version = version + 1, updated_at = \(tx.now)
            WHERE order_id = \(orderId)
            """)
        try await Outbox.emit(PaymentEvents.intentCreated, PaymentIntentV1(
            orderId: orderId, intentId: intent.id, clientSecret: intent.clientSecret, status: intent.status.rawValue, amount: intent.amount.amount,
            currency: intent.amount.currency.code, occurredAt: tx.now), in: tx)
    }

    // MARK: The provider's word

    /// Intents of orders re-read from the provider (after a webhook): each applied to its order's
    /// payment once. An intent whose order billing has not recorded yet is kept until it is.
    func record(_ intents: [ProviderPaymentIntent], in tx: Transaction) async throws {
        for intent in intents {
            guard let orderId = intent.metadata["order_id"].flatMap(UUID.init(uuidString:)) else { continue }
            guard var payment = try await lock(orderId, in: tx) else {
                tx.logger.info("payment intent before its order; kept until order.placed", metadata: ["payment_intent.id": "\(intent.id)"])
                try await tx.query("""
                    INSERT INTO early_intent_events (intent_id, order_id, received_at) VALUES (\(intent.id), \(orderId), \(tx.now))
                    ON CONFLICT (intent_id) DO NOTHING
                    """)
                continue
            }
            guard payment.intentId == nil || payment.intentId == intent.id else {
                // Billing makes one intent per order (its key is the order); another is not ours to apply.
                tx.logger.error("payment intent is not the order's own", metadata: ["payment_intent.id": "\(intent.id)", "order.id": "\(orderId.lowercased)"])
                continue
            }
            if payment.intentId == nil || payment.intentStatus != intent.status.rawValue {
                payment.intentId = intent.id
                payment.intentStatus = intent.status.rawValue
                try await tx.query("""
                    UPDATE order_payments SET intent_id = \(intent.id), intent_status = \(intent.status.rawValue), updated_at = \(tx.now)
                    WHERE order_id = \(orderId)
                    """)
            }
            switch intent.status {
            case .succeeded:
                payment.fee = min(intent.fee.amount, payment.amount.amount)
                try await applyIfAllowed(.paymentSucceeded, to: payment, in: tx)
            case .requiresPaymentMethod where intent.failureCode != nil:
                try await applyIfAllowed(.paymentFailed, to: payment, in: tx)
            default:
                continue
            }
        }
    }

    // MARK: The order's facts

    func canceled(_ order: OrderCanceledV1, in tx: Transaction) async throws {
        guard let payment = try await lock(order.orderId, in: tx) else { return }
        try await applyIfAllowed(.orderCanceled, to: payment, in: tx)
    }

    func received(_ order: OrderReceivedV1, in tx: Transaction) async throws {
        guard let payment = try await lock(order.orderId, in: tx) else { return }
        try await applyIfAllowed(.orderReceived, to: payment,
                                 input: Input(stated: (order.vendorAmount, order.commissionAmount)), in: tx)
    }

    /// A buyer's dispute freezes what escrow holds for the vendor (their `inDispute`).
    func disputeOpened(_ dispute: DisputeOpenedV1, in tx: Transaction) async throws {
        guard let payment = try await lock(dispute.orderId, in: tx) else { return }
        try await applyIfAllowed(.disputeOpened, to: payment, in: tx)
    }

    func disputeWithdrawn(_ dispute: DisputeChangedV1, in tx: Transaction) async throws {
        guard let payment = try await lock(dispute.orderId, in: tx) else { return }
        try await applyIfAllowed(.disputeWithdrawn, to: payment, in: tx)
    }

    /// The desk's decision: released, refunded in full (all that remains), or split.
    func disputeResolved(_ dispute: DisputeResolvedV1, in tx: Transaction) async throws {
        guard let payment = try await lock(dispute.orderId, in: tx) else { return }
        let event: OrderPaymentEvent = switch dispute.outcome {
        case "refund" where dispute.refundAmount >= payment.remaining: .resolvedByFullRefund
        case "refund": .resolvedBySplit
        default: .resolvedByRelease
        }
        try await applyIfAllowed(event, to: payment, input: Input(refund: dispute.refundAmount, reason: "dispute \(dispute.disputeId.lowercased)"), in: tx)
    }

    // MARK: Transitions

    /// What a transition needs beyond the event: the refund a part-refund takes, the split orders stated.
    struct Input: Sendable {
        var refund: Int64? = nil
        var stated: (vendor: Int64, commission: Int64)? = nil
        var reason: String? = nil
        var requestedBy: UUID? = nil
        /// The refund's id, when the caller needs to know it (an admin's refund answers with it).
        var refundId: UUID? = nil
        /// The chargeback a chargeback event moves money for.
        var chargeback: ChargebackAmounts? = nil
    }

    /// What a chargeback moves: the provider withholds `amount`; `frozen` of it (at most what was
    /// not refunded) is the vendor's money frozen, `commissionPart` of that from the commission
    /// when it had been released.
    struct ChargebackAmounts: Sendable, Equatable {
        var disputeId: String
        var amount: Int64
        var frozen: Int64
        var commissionPart: Int64
    }

    /// A stale or redelivered fact the table refuses changes nothing.
    @discardableResult
    func applyIfAllowed(_ event: OrderPaymentEvent, to payment: OrderPayment, input: Input = Input(), in tx: Transaction) async throws -> OrderPayment? {
        guard (try? OrderPaymentStateMachine.transition(from: payment.status, on: event)) != nil else {
            tx.logger.info("order payment event not applicable", metadata: [
                "order.id": "\(payment.orderId.lowercased)", "event": "\(event.rawValue)", "status": "\(payment.status.rawValue)"])
            return nil
        }
        return try await apply(event, to: payment, input: input, in: tx)
    }

    /// Moves a payment (locked by this transaction) and does what the transition obliges, in the
    /// same transaction: its ledger movements, its refund (a row and a job), its intent's
    /// cancellation (a job), its event.
    func apply(_ event: OrderPaymentEvent, to current: OrderPayment, input: Input = Input(), in tx: Transaction) async throws -> OrderPayment {
        let (next, effects) = try OrderPaymentStateMachine.transition(from: current.status, on: event)
        var p = current
        p.status = next
        p.version += 1
        let refundsAll = effects.contains(.refundInFull)
        let refund = refundsAll ? current.remaining : (effects.contains(.refundPart) ? input.refund ?? 0 : 0)
        guard refund >= 0, refund <= current.remaining else { throw Problem.validation([FieldError("amount", "is more than remains of the payment")]) }
        let refundId = input.refundId ?? UUID.v7(now: tx.now)
        var postings: [Ledger.Posting] = []
        var replay = false
        for effect in effects {
            switch effect {
            case .post(let movement):
                if let posting = try posting(movement, of: current, refund: refund, refundId: refundId, input: input) {
                    postings.append(posting)
                }
                if movement == .released || movement == .settled { p.releasedAt = tx.now }
            case .refundInFull, .refundPart:
                guard refund > 0 else { continue }
                p.refunded += refund
                try await tx.query("""
                    INSERT INTO order_refunds (id, order_id, amount, currency, reason, status, requested_by, created_at)
                    VALUES (\(refundId), \(p.orderId), \(refund), \(p.amount.currency.code), \(input.reason ?? event.rawValue), 'pending',
                            \(input.requestedBy), \(tx.now))
                    """)
                try await tx.schedule(Self.refund, key: refundId.lowercased, payload: OrderRefundJob(refundId: refundId), at: tx.now)
            case .cancelIntent:
                try await tx.schedule(Self.cancelIntent, key: p.orderId.lowercased, payload: OrderIntent(orderId: p.orderId), at: tx.now)
            case .emit(.succeeded):
                try await Outbox.emit(PaymentEvents.succeeded, PaymentIntentV1(
                    orderId: p.orderId, intentId: p.intentId ?? "", clientSecret: nil, status: "succeeded", amount: p.amount.amount,
                    currency: p.amount.currency.code, occurredAt: tx.now), in: tx)
            case .deferFact, .deferDispute:
                let deferred = effect == .deferDispute ? OrderPaymentEvent.disputeOpened : event
                try await tx.query("""
                    UPDATE order_payments SET deferred_event = \(deferred.rawValue), deferred_vendor = \(input.stated?.vendor),
                        deferred_commission = \(input.stated?.commission)
                    WHERE order_id = \(p.orderId)
                    """)
            case .replayDeferred:
                replay = true
            }
        }
        try await ledger.post(postings, in: tx)
        try await tx.query("""
            UPDATE order_payments SET status = \(p.status.rawValue), fee = \(p.fee), refunded = \(p.refunded), released_at = \(p.releasedAt),
                paid_at = CASE WHEN \(event == .paymentSucceeded) THEN \(tx.now) ELSE paid_at END,
                version = \(p.version), updated_at = \(tx.now)
            WHERE order_id = \(p.orderId)
            """)
        tx.logger.info("order payment \(event.rawValue)", metadata: ["order.id": "\(p.orderId.lowercased)", "status": "\(p.status.rawValue)"])
        if replay { return try await replayDeferred(p, in: tx) }
        return p
    }

    /// The order fact that waited for a chargeback to be won, applied now.
    private func replayDeferred(_ p: OrderPayment, in tx: Transaction) async throws -> OrderPayment {
        var deferred: (String?, Int64?, Int64?) = (nil, nil, nil)
        for try await row in try await tx.query("""
            SELECT deferred_event, deferred_vendor, deferred_commission FROM order_payments WHERE order_id = \(p.orderId)
            """).decode((String?, Int64?, Int64?).self) {
            deferred = row
        }
        try await tx.query("""
            UPDATE order_payments SET deferred_event = NULL, deferred_vendor = NULL, deferred_commission = NULL WHERE order_id = \(p.orderId)
            """)
        guard let name = deferred.0, let event = OrderPaymentEvent(rawValue: name) else { return p }
        let stated = deferred.1.flatMap { vendor in deferred.2.map { (vendor, $0) } }
        return try await applyIfAllowed(event, to: p, input: Input(stated: stated), in: tx) ?? p
    }

    /// The balanced entry of a movement (billing's README lists each with an example). Escrow,
    /// disputed escrow and vendor payable lines carry the vendor as their party.
    func posting(_ movement: OrderPaymentEffect.Movement, of p: OrderPayment, refund: Int64, refundId: UUID, input: Input) throws -> Ledger.Posting? {
        let stated = input.stated
        let vendor = p.vendorId
        let order = p.orderId.lowercased
        func entry(_ kind: String, _ reference: String, _ lines: [Ledger.Line]) -> Ledger.Posting {
            Ledger.Posting(kind: "order_\(kind)", reference: reference, currency: p.amount.currency, memo: "order \(order)", lines: lines)
        }
        switch movement {
        case .captured:
            return entry("captured", order, [
                .init(account: .providerBalance, amount: p.amount.amount - p.fee), .init(account: .providerFees, amount: p.fee),
                .init(account: .orderEscrow, amount: -p.amount.amount, party: vendor)])
        case .released:
            let split = EscrowSplit.split(p.remaining, amount: p.amount.amount, commission: p.commission, stated: stated)
            return entry("released", order, [
                .init(account: .orderEscrow, amount: p.remaining, party: vendor),
                .init(account: .vendorPayable, amount: -split.vendor, party: vendor), .init(account: .commissionRevenue, amount: -split.commission)])
        case .refunded:
            return entry("refunded", refundId.lowercased, [
                .init(account: .orderEscrow, amount: refund, party: vendor), .init(account: .refundsPayable, amount: -refund)])
        case .settled:
            let split = EscrowSplit.split(p.remaining - refund, amount: p.amount.amount, commission: p.commission, stated: stated)
            return entry("settled", order, [
                .init(account: .orderEscrow, amount: p.remaining, party: vendor), .init(account: .refundsPayable, amount: -refund),
                .init(account: .vendorPayable, amount: -split.vendor, party: vendor), .init(account: .commissionRevenue, amount: -split.commission)])
        case .frozen, .unfrozen:
            let (from, to): (Ledger.Account, Ledger.Account) = movement == .frozen ? (.orderEscrow, .disputedEscrow) : (.disputedEscrow, .orderEscrow)
            return entry(movement.rawValue, "\(order):\(p.version + 1)", [
                .init(account: from, amount: p.remaining, party: vendor), .init(account: to, amount: -p.remaining, party: vendor)])
        case .clawedBack:
            let commission = EscrowSplit.commission(of: refund, amount: p.amount.amount, commission: p.commission)
            return entry("clawed_back", refundId.lowercased, [
                .init(account: .vendorPayable, amount: refund - commission, party: vendor), .init(account: .commissionRevenue, amount: commission),
                .init(account: .refundsPayable, amount: -refund)])
        case .chargebackFrozen, .chargebackRecalled, .chargebackReturned, .chargebackRestored, .chargebackLost:
            guard let cb = input.chargeback else { throw OrderPaymentError.noChargeback(p.orderId) }
            // The provider's withholding: taken at opening, given back if won, gone if lost.
            let withheld: [Ledger.Line] = switch movement {
            case .chargebackFrozen, .chargebackRecalled: [.init(account: .chargebacksWithheld, amount: cb.amount), .init(account: .providerBalance, amount: -cb.amount)]
            case .chargebackReturned, .chargebackRestored: [.init(account: .providerBalance, amount: cb.amount), .init(account: .chargebacksWithheld, amount: -cb.amount)]
            default: [.init(account: .chargebackLosses, amount: cb.amount - cb.frozen), .init(account: .chargebacksWithheld, amount: -cb.amount)]
            }
            let vendorPart = cb.frozen - cb.commissionPart
            let frozen: [Ledger.Line] = switch movement {
            case .chargebackFrozen:
                [.init(account: .orderEscrow, amount: cb.frozen, party: vendor), .init(account: .disputedEscrow, amount: -cb.frozen, party: vendor)]
            case .chargebackReturned:
                [.init(account: .disputedEscrow, amount: cb.frozen, party: vendor), .init(account: .orderEscrow, amount: -cb.frozen, party: vendor)]
            case .chargebackRecalled:
                [.init(account: .vendorPayable, amount: vendorPart, party: vendor), .init(account: .commissionRevenue, amount: cb.commissionPart),
                 .init(account: .disputedEscrow, amount: -cb.frozen, party: vendor)]
            case .chargebackRestored:
                [.init(account: .disputedEscrow, amount: cb.frozen, party: vendor), .init(account: .vendorPayable, amount: -vendorPart, party: vendor),
                 .init(account: .commissionRevenue, amount: -cb.commissionPart)]
            default:
                [.init(account: .disputedEscrow, amount: cb.frozen, party: vendor)]
            }
            return entry(movement.rawValue, cb.disputeId, frozen + withheld)
        }
    }

    // MARK: An admin's refund

    struct RefundView: Codable, Sendable, Equatable {
        var id: UUID
        var orderId: UUID
        var amount: Money
        var reason: String
        /// `pending` until the provider has refunded, then `succeeded`.
        var status: String
        var createdAt: Date
    }

    /// `amount` of an order's payment back to the buyer: out of escrow while it is held, out of the
    /// vendor's payable and the commission once released. At most what has not been refunded yet.
    func refund(order orderId: UUID, amount: Money, reason: String, by admin: UUID, in tx: Transaction) async throws -> RefundView {
        guard let payment = try await lock(orderId, in: tx) else { throw BillingError.orderPaymentNotFound }
        guard amount.currency == payment.amount.currency else {
            throw Problem.validation([FieldError("amount.currency", "must be the order's currency, \(payment.amount.currency.code)")])
        }
        guard amount.amount <= payment.remaining else {
            throw Problem.validation([FieldError("amount.amount", "is more than remains refundable (\(Money(amount: payment.remaining, currency: amount.currency)))")])
        }
        let id = UUID.v7(now: tx.now)
        try await apply(amount.amount == payment.remaining ? .refundRest : .refundPart, to: payment,
                        input: Input(refund: amount.amount, reason: reason, requestedBy: admin, refundId: id), in: tx)
        return RefundView(id: id, orderId: orderId, amount: amount, reason: reason, status: "pending", createdAt: tx.now)
    }

    // MARK: Jobs

    /// The refund job: the provider refunds (key: the refund's id, so a retry is the same refund);
    /// the promise to the buyer is settled in the ledger and the refund announced.
    func performRefund(_ refundId: UUID, in tx: Transaction) async throws {
        let rows = try await tx.query("""
            SELECT r.order_id, r.amount, r.currency::text, r.reason, p.intent_id
            FROM order_refunds r JOIN order_payments p ON p.order_id = r.order_id
            WHERE r.id = \(refundId) AND r.status = 'pending' FOR UPDATE OF r
            """)
        var found: (UUID, Int64, String, String, String?)?
        for try await row in rows.decode((UUID, Int64, String, String, String?).self) { found = row }
        guard let (orderId, amount, code, reason, intentId) = found else { return }
        guard let intentId else { throw OrderPaymentError.noIntent(orderId) }
        let money = try Money(amount: amount, currencyCode: code)
        let refund = try await provider.refund(RefundRequest(paymentIntent: intentId, amount: money, reason: "requested_by_customer",
                                                             metadata: ["order_id": orderId.lowercased, "refund_id": refundId.lowercased, "reason": reason]),
                                               idempotencyKey: "refund:\(refundId.lowercased)")
        try await tx.query("""
            UPDATE order_refunds SET status = 'succeeded', provider_refund_id = \(refund.id), refunded_at = \(tx.now) WHERE id = \(refundId)
            """)
        try await ledger.post(kind: "order_refund_paid", reference: refundId.lowercased, currency: money.currency, memo: "refund \(refund.id)",
                              lines: [.init(account: .refundsPayable, amount: amount), .init(account: .providerBalance, amount: -amount)], in: tx)
        let total = try await tx.first("""
            SELECT coalesce(sum(amount), 0)::bigint FROM order_refunds WHERE order_id = \(orderId) AND status = 'succeeded'
            """, as: Int64.self) ?? amount
        try await Outbox.emit(PaymentEvents.refunded, PaymentRefundedV1(
            orderId: orderId, intentId: intentId, refundId: refund.id, amount: amount, refundedTotal: total, currency: code, refundedAt: tx.now), in: tx)
    }

    /// The chargeback job: the dispute as the provider holds it now, applied to its order's payment
    /// once. Opening freezes the money (escrow, or the vendor's payable and the commission after
    /// release); closing gives it back (won) or lets it go (lost). Events in any order end in the
    /// dispute's current state: a `closed` read first opens and closes in one go.
    func reconcileChargeback(_ disputeId: String, in tx: Transaction) async throws {
        try await applyChargeback(disputeId, in: tx)
        try await tx.query("""
            UPDATE webhook_events SET applied_at = \(tx.now) WHERE provider = \(provider.name) AND object_id = \(disputeId) AND applied_at IS NULL
            """)
    }

    private func applyChargeback(_ disputeId: String, in tx: Transaction) async throws {
        let dispute = try await provider.dispute(disputeId)
        guard let orderId = try await tx.first("SELECT order_id FROM order_payments WHERE intent_id = \(dispute.paymentIntent)", as: UUID.self),
              var payment = try await lock(orderId, in: tx) else {
            tx.logger.warning("dispute of a payment that is not an order's", metadata: ["dispute.id": "\(disputeId)"])
            return
        }
        var status: String?
        var amounts: ChargebackAmounts?
        for try await (state, frozen, commission) in try await tx.query("""
            SELECT status, frozen, commission_part FROM chargebacks WHERE dispute_id = \(disputeId) FOR UPDATE
            """).decode((String, Int64, Int64).self) {
            status = state
            amounts = ChargebackAmounts(disputeId: disputeId, amount: dispute.amount.amount, frozen: frozen, commissionPart: commission)
        }
        if status == nil {
            let frozen = min(dispute.amount.amount, payment.remaining)
            let opened = ChargebackAmounts(disputeId: disputeId, amount: dispute.amount.amount, frozen: frozen,
                                           commissionPart: payment.status == .released
                                               ? EscrowSplit.commission(of: frozen, amount: payment.amount.amount, commission: payment.commission) : 0)
            let moved = try await applyIfAllowed(.chargebackOpened, to: payment, input: Input(chargeback: opened), in: tx)
            status = moved == nil ? "ignored" : "open"
            payment = moved ?? payment
            amounts = opened
            if moved != nil {
                try await Outbox.emit(PaymentEvents.chargebackOpened, ChargebackV1(
                    orderId: orderId, chargebackId: disputeId, amount: dispute.amount.amount, currency: dispute.amount.currency.code,
                    reason: dispute.reason ?? "unknown", status: "open", occurredAt: tx.now), in: tx)
            }
            try await tx.query("""
                INSERT INTO chargebacks (dispute_id, order_id, amount, currency, frozen, commission_part, status, reason, opened_at)
                VALUES (\(disputeId), \(orderId), \(dispute.amount.amount), \(dispute.amount.currency.code), \(opened.frozen), \(opened.commissionPart),
                        \(status!), \(dispute.reason), \(tx.now))
                """)
        }
        guard status == "open", dispute.outcome != .open, let amounts else { return }
        let won = dispute.outcome == .won
        try await applyIfAllowed(won ? .chargebackWon : .chargebackLost, to: payment, input: Input(chargeback: amounts), in: tx)
        try await tx.query("""
            UPDATE chargebacks SET status = \(won ? "won" : "lost"), closed_at = \(tx.now) WHERE dispute_id = \(disputeId)
            """)
        try await Outbox.emit(PaymentEvents.chargebackClosed, ChargebackV1(
            orderId: orderId, chargebackId: disputeId, amount: dispute.amount.amount, currency: dispute.amount.currency.code,
            reason: dispute.reason ?? "unknown", status: won ? "won" : "lost", occurredAt: tx.now), in: tx)
    }

    /// The cancel job: the dead order's intent can no longer be paid. One the buyer paid just
    /// before is not canceled: its success arrives as a webhook and is refunded.
    func cancelIntent(of orderId: UUID, in tx: Transaction) async throws {
        guard let payment = try await lock(orderId, in: tx), let intentId = payment.intentId, payment.status == .canceled else { return }
        do {
            let intent = try await provider.cancelPaymentIntent(intentId, idempotencyKey: "order:\(orderId.lowercased):cancel")
            try await tx.query("UPDATE order_payments SET intent_status = \(intent.status.rawValue), updated_at = \(tx.now) WHERE order_id = \(orderId)")
        } catch ProviderError.invalidRequest(let message) {
            tx.logger.info("order intent not canceled", metadata: ["order.id": "\(orderId.lowercased)", "reason": "\(message)"])
        }
    }

    // MARK: Rows

    func lock(_ orderId: UUID, in tx: Transaction) async throws -> OrderPayment? {
        try await OrderPayment.decode(tx.query("""
            SELECT \(unescaped: OrderPayment.columns) FROM order_payments WHERE order_id = \(orderId) FOR UPDATE
            """)).first
    }
}

enum OrderPaymentError: Error, Equatable {
    /// A refund of a payment whose intent billing never recorded (cannot happen once paid).
    case noIntent(UUID)
    /// A chargeback movement without its chargeback's amounts (a programming error).
    case noChargeback(UUID)
}
