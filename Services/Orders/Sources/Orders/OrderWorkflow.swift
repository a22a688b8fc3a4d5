import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// What an order event needs besides the event itself.
struct OrderInput: Sendable {
    var actorId: UUID?
    var note: String?
    /// `ship`.
    var carrier: String?
    var trackingNumber: String?
    /// Why a cancellation happened (`payment_timeout`, `stock_rejected`, …); the default is the event's.
    var reason: String?
    /// The dispute a dispute's transition is about (its events carry it).
    var dispute: DisputeRecord?

    init(actorId: UUID? = nil, note: String? = nil, carrier: String? = nil, trackingNumber: String? = nil, reason: String? = nil,
         dispute: DisputeRecord? = nil) {
        self.actorId = actorId
        self.note = note
        self.carrier = carrier
        self.trackingNumber = trackingNumber
        self.reason = reason
        self.dispute = dispute
    }
}

/// An order timer's payload.
struct OrderTimerPayload: Codable, Sendable {
    var orderId: UUID
}

/// The order's process: every change loads the order locked, asks the transition table, and
/// carries out the effects in the same transaction (the row, its history, its timers, its events).
/// Nothing here calls another service: listings and billing act on the events, and answer with theirs.
struct OrderWorkflow: Sendable {
    static let paymentDeadline = JobKind<OrderTimerPayload>("orders.payment-deadline")
    static let assumedReceipt = JobKind<OrderTimerPayload>("orders.assumed-receipt")
    static let reviewWindow = JobKind<OrderTimerPayload>("orders.review-window")

    /// How long a placed order waits for its payment.
    static let paymentWindow: TimeInterval = 15 * 60
    /// How long after delivery receipt is assumed.
    static let receiptWindow: TimeInterval = 14 * 86_400
    /// How long after receipt the order completes.
    static let reviewWindowLength: TimeInterval = 7 * 86_400
    /// The most units one order takes.
    static let maximumQuantity = 1_000

    let orders = OrderRepository()

    static func kind(of timer: OrderTimer) -> JobKind<OrderTimerPayload> {
        switch timer {
        case .paymentDeadline: paymentDeadline
        case .assumedReceipt: assumedReceipt
        case .reviewWindow: reviewWindow
        }
    }

    // MARK: Placing

    /// A new order, priced from orders' snapshot of the listing and the vendor's commission rate:
    /// refused at once when the snapshot says it cannot be (unorderable, own listing, short
    /// stock). Listings has the last word on stock (`stock.reserved` or `stock.rejected`), at the
    /// price stated in `order.placed`.
    func place(buyer: UUID, listingId: UUID, quantity: Int, address: ShippingAddress, in tx: Transaction) async throws -> OrderRecord {
        guard let listing = try await ListingSnapshots.snapshot(listingId, in: tx), listing.orderable else { throw OrdersError.listingUnavailable }
        guard listing.vendorId != buyer else { throw OrdersError.ownListing }
        guard listing.quantityAvailable >= quantity else { throw OrdersError.insufficientStock(available: listing.quantityAvailable) }
        // No rate yet: billing has not told orders about the vendor's plan (nothing it sells is orderable).
        guard let bps = try await VendorCommissions.rate(of: listing.vendorId, in: tx) else { throw OrdersError.listingUnavailable }
        let settlement = try Settlement.placed(unitPrice: listing.price, quantity: quantity, commissionBps: bps)
        let now = tx.now
        let order = OrderRecord(
            id: UUID.v7(now: now), buyerId: buyer, vendorId: listing.vendorId, status: .pendingPayment, listingId: listing.id,
            listingTitle: listing.title, quantity: quantity, unitPrice: listing.price, total: settlement.total, commissionBps: bps,
            commission: settlement.commission, shippingAddress: address, paymentDueAt: now.addingTimeInterval(Self.paymentWindow),
            payment: nil, refunded: .zero(listing.price.currency), carrier: nil, trackingNumber: nil, cancelReason: nil,
            stockConfirmed: false, version: 1, createdAt: now, updatedAt: now)
        try await orders.insert(order, in: tx)
        try await orders.record(OrderChange(status: order.status.rawValue, at: now, event: "placed", actorId: buyer, note: nil), of: order.id, in: tx)
        try await tx.schedule(Self.paymentDeadline, key: order.id.lowercased, payload: OrderTimerPayload(orderId: order.id), at: order.paymentDueAt)
        try await Obligations.open("order", reference: order.id, for: [buyer, order.vendorId], service: OrdersService.name, in: tx)
        try await Outbox.emit(OrderEvents.placed, OrderPlacedV1(
            orderId: order.id, listingId: order.listingId, buyerId: buyer, quantity: quantity, placedAt: now, vendorId: order.vendorId,
            unitPriceAmount: order.unitPrice.amount, totalAmount: order.total.amount, commissionAmount: order.commission.amount,
            currency: order.total.currency.code, paymentDueAt: order.paymentDueAt), in: tx)
        return order
    }

    // MARK: Events

    /// For the saga and the timers: applies `event` if the table allows it now; otherwise the
    /// answer or timer is stale (the order moved on) and nothing happens.
    @discardableResult
    func applyIfAllowed(_ event: OrderEvent, to current: OrderRecord, input: OrderInput = OrderInput(), in tx: Transaction) async throws -> OrderRecord? {
        guard (try? OrderStateMachine.transition(from: current.status, on: event)) != nil else {
            tx.logger.info("order event not applicable", metadata: [
                "order.id": "\(current.id.lowercased)", "order.status": "\(current.status.rawValue)", "event": "\(event)"])
            return nil
        }
        return try await apply(event, to: current, input: input, in: tx)
    }

    /// Applies `event` to the (locked) order; a refused pair throws the 409.
    func apply(_ event: OrderEvent, to current: OrderRecord, input: OrderInput = OrderInput(), in tx: Transaction) async throws -> OrderRecord {
        let (next, effects) = try OrderStateMachine.transition(from: current.status, on: event)
        let now = tx.now
        let key = current.id.lowercased
        var o = current
        o.status = next
        var notes: [String] = input.note.map { [$0] } ?? []
        if event == .ship {
            o.carrier = input.carrier
            o.trackingNumber = input.trackingNumber
        }
        if event == .stockReserved { o.stockConfirmed = true }
        if next == .canceled, current.status != .canceled {
            o.cancelReason = input.reason ?? Self.cancelReason(event)
        }
        var facts: [OrderFact] = []
        for effect in effects {
            switch effect {
            case .emit(let fact):
                facts.append(fact)
            case .schedule(let timer):
                let due = switch timer {
                case .paymentDeadline: o.paymentDueAt
                case .assumedReceipt: now.addingTimeInterval(Self.receiptWindow)
                case .reviewWindow: now.addingTimeInterval(Self.reviewWindowLength)
                }
                try await tx.schedule(Self.kind(of: timer), key: key, payload: OrderTimerPayload(orderId: o.id), at: due, ifExists: .replace)
            case .cancel(let timer):
                try await tx.cancel(Self.kind(of: timer), key: key)
            case .refundInFull:
                // Billing refunds what it holds for a canceled order, in full (on `order.canceled`, or
                // at once when a payment lands after it): the refund is noted here when billing reports it.
                notes.append("a full refund is due")
            }
        }
        let saved = try await orders.update(o, from: current, in: tx)
        if current.status.holdsParties != next.holdsParties {
            let change = next.holdsParties ? Obligations.open : Obligations.close
            try await change("order", saved.id, [saved.buyerId, saved.vendorId], OrdersService.name, tx)
        }
        try await orders.record(OrderChange(status: next.rawValue, at: now, event: event.rawValue, actorId: input.actorId,
                                            note: notes.isEmpty ? nil : notes.joined(separator: "; ")), of: saved.id, in: tx)
        for fact in facts { try await emit(fact, saved, previous: current, event: event, dispute: input.dispute, in: tx) }
        return saved
    }

    /// Why an order was canceled, as `order.canceled` states it.
    static func cancelReason(_ event: OrderEvent) -> String {
        switch event {
        case .paymentDeadlinePassed: "payment_timeout"
        case .stockRejected: "stock_rejected"
        case .cancelByBuyer: "buyer_canceled"
        case .cancelByVendor: "vendor_canceled"
        default: "canceled"
        }
    }

    // MARK: Events out

    func emit(_ fact: OrderFact, _ o: OrderRecord, previous: OrderRecord, event: OrderEvent, dispute: DisputeRecord?, in tx: Transaction) async throws {
        let now = tx.now
        switch fact {
        case .paid:
            try await Outbox.emit(OrderEvents.paid, OrderPaidV1(orderId: o.id, listingId: o.listingId, paidAt: now, buyerId: o.buyerId, vendorId: o.vendorId),
                                  in: tx)
        case .canceled:
            try await Outbox.emit(OrderEvents.canceled, OrderCanceledV1(
                orderId: o.id, listingId: o.listingId, reason: o.cancelReason ?? Self.cancelReason(event), canceledAt: now, buyerId: o.buyerId,
                vendorId: o.vendorId, wasPaid: previous.status != .pendingPayment), in: tx)
        case .shipped:
            try await Outbox.emit(OrderEvents.shipped, OrderShippedV1(
                orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId, carrier: o.carrier ?? "",
                trackingNumber: o.trackingNumber ?? "", shippedAt: now), in: tx)
        case .delivered:
            try await Outbox.emit(OrderEvents.delivered, OrderDeliveredV1(
                orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId, deliveredAt: now,
                receiptAssumedAt: now.addingTimeInterval(Self.receiptWindow)), in: tx)
        case .received:
            let settlement = try Settlement.settling(o.total, refund: o.refunded, commissionBps: o.commissionBps)
            try await Outbox.emit(OrderEvents.received, OrderReceivedV1(
                orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId, totalAmount: o.total.amount,
                refundedAmount: o.refunded.amount, commissionAmount: settlement.commission.amount, vendorAmount: settlement.vendor.amount,
                currency: o.total.currency.code, assumed: event == .receiptAssumed, receivedAt: now), in: tx)
        case .completed:
            try await Outbox.emit(OrderEvents.completed, OrderCompletedV1(
                orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId, completedAt: now), in: tx)
        case .disputeOpened, .disputeWithdrawn, .disputeResolved:
            guard let d = dispute else { throw OrderWorkflowError.disputeMissing(o.id) }
            switch fact {
            case .disputeOpened:
                try await Outbox.emit(DisputeEvents.opened, DisputeOpenedV1(
                    disputeId: d.id, orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId, reason: d.reason.rawValue,
                    openedAt: now), in: tx)
            case .disputeWithdrawn:
                try await Outbox.emit(DisputeEvents.withdrawn, DisputeChangedV1(
                    disputeId: d.id, orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId, at: now), in: tx)
            default:
                try await Outbox.emit(DisputeEvents.resolved, DisputeResolvedV1(
                    disputeId: d.id, orderId: o.id, listingId: o.listingId, buyerId: o.buyerId, vendorId: o.vendorId,
                    outcome: d.resolution?.outcome.rawValue ?? DisputeOutcome.release.rawValue, refundAmount: d.resolution?.refundAmount ?? 0,
                    totalAmount: o.total.amount, currency: o.total.currency.code, resolvedAt: now), in: tx)
            }
        }
    }

    // MARK: The saga's answers

    /// Listings held the units. At another price than the order states (the listing changed in
    /// between), the order cannot go ahead at its price: it is canceled (`price_changed`).
    func stockReserved(_ reserved: StockReservedV1, in tx: Transaction) async throws {
        guard let current = try await orders.lock(reserved.orderId, in: tx) else { return unknown(reserved.orderId, "stock.reserved", tx) }
        guard reserved.unitPriceAmount == current.unitPrice.amount, reserved.currency == current.unitPrice.currency.code else {
            try await applyIfAllowed(.stockRejected, to: current, input: OrderInput(
                note: "listed at \(reserved.unitPriceAmount) \(reserved.currency) when reserved", reason: "price_changed"), in: tx)
            return
        }
        guard !current.stockConfirmed else { return }
        try await applyIfAllowed(.stockReserved, to: current, in: tx)
    }

    func stockRejected(_ rejected: StockRejectedV1, in tx: Transaction) async throws {
        guard let current = try await orders.lock(rejected.orderId, in: tx) else { return unknown(rejected.orderId, "stock.rejected", tx) }
        try await applyIfAllowed(.stockRejected, to: current, input: OrderInput(note: rejected.reason), in: tx)
    }

    /// Billing made the order's payment intent: the buyer's client confirms it with `clientSecret`.
    func intentCreated(_ intent: PaymentIntentV1, in tx: Transaction) async throws {
        guard let current = try await orders.lock(intent.orderId, in: tx) else { return unknown(intent.orderId, "payment.intent_created", tx) }
        // A later word about the payment (it succeeded) is never overwritten by this earlier one.
        guard current.payment == nil else { return }
        var o = current
        o.payment = PaymentView(intentId: intent.intentId, clientSecret: intent.clientSecret, status: intent.status)
        _ = try await orders.update(o, from: current, in: tx)
    }

    /// The buyer paid: the order is paid, or, canceled meanwhile, billing refunds it at once.
    func paymentSucceeded(_ intent: PaymentIntentV1, in tx: Transaction) async throws {
        guard var current = try await orders.lock(intent.orderId, in: tx) else { return unknown(intent.orderId, "payment.succeeded", tx) }
        if current.payment?.status != "succeeded" {
            var o = current
            o.payment = PaymentView(intentId: intent.intentId, clientSecret: current.payment?.clientSecret ?? intent.clientSecret, status: "succeeded")
            current = try await orders.update(o, from: current, in: tx)
        }
        try await applyIfAllowed(.paymentSucceeded, to: current, in: tx)
    }

    /// Billing gave money back: the order shows how much, and its timeline says so.
    func paymentRefunded(_ refund: PaymentRefundedV1, in tx: Transaction) async throws {
        guard let current = try await orders.lock(refund.orderId, in: tx) else { return unknown(refund.orderId, "payment.refunded", tx) }
        guard refund.refundedTotal > current.refunded.amount, refund.currency == current.total.currency.code else { return }
        var o = current
        o.refunded = Money(amount: min(refund.refundedTotal, current.total.amount), currency: current.total.currency)
        if o.refunded == o.total, let payment = o.payment { o.payment = PaymentView(intentId: payment.intentId, clientSecret: payment.clientSecret, status: "refunded") }
        let saved = try await orders.update(o, from: current, in: tx)
        try await orders.record(OrderChange(status: saved.status.rawValue, at: tx.now, event: "refunded", actorId: nil,
                                            note: "\(Money(amount: refund.amount, currency: current.total.currency)) back to the buyer"), of: saved.id, in: tx)
    }

    func unknown(_ order: UUID, _ what: String, _ tx: Transaction) {
        // Another service's answer about an order this one never placed: not ours to act on.
        tx.logger.warning("answer about an unknown order", metadata: ["order.id": "\(order.lowercased)", "event": "\(what)"])
    }

    // MARK: Timers

    func timerFired(_ timer: OrderTimer, _ payload: OrderTimerPayload, in tx: Transaction) async throws {
        guard let current = try await orders.lock(payload.orderId, in: tx) else { return }
        let event: OrderEvent = switch timer {
        case .paymentDeadline: .paymentDeadlinePassed
        case .assumedReceipt: .receiptAssumed
        case .reviewWindow: .reviewWindowClosed
        }
        try await applyIfAllowed(event, to: current, in: tx)
    }
}

enum OrderWorkflowError: Error, Equatable {
    /// A dispute transition applied without its dispute (a programming error).
    case disputeMissing(UUID)
}
