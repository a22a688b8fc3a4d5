import Platform

/// Where an order is. Money is held in escrow from `paid` until `received`; `completed`,
/// `canceled` and `refunded` are final.
enum OrderStatus: String, CaseIterable, Sendable, Codable {
    /// Stock reserved (or being reserved), a payment intent made: 15 minutes to pay.
    case pendingPayment = "pending_payment"
    case paid
    case shipped
    /// The 14-day timer to assumed receipt runs.
    case delivered
    /// The vendor's money left escrow; the 7-day review window runs.
    case received
    case completed
    /// Before payment, or after payment and before shipping (refunded in full).
    case canceled
    /// A buyer's dispute of a delivered order: the vendor's money is frozen until a moderator decides.
    case disputed
    /// A dispute resolved with a refund, in full or in part (the rest released to the vendor).
    case refunded

    var isFinal: Bool { self == .completed || self == .canceled || self == .refunded }

    /// Still running its course for its buyer and vendor (an obligation that blocks erasure):
    /// from placing until the money has gone to the vendor or back to the buyer.
    var holdsParties: Bool { !isFinal && self != .received }

    /// The status as a sentence reads it ("An order that is pending payment …").
    var phrase: String { rawValue.replacingOccurrences(of: "_", with: " ") }
}

/// What happens to an order: the other services' answers in the saga, the business clock's
/// timers, the parties' requests and a moderator's decision. Raw values read in the 409's
/// sentence ("An order that is shipped cannot be canceled by its buyer.").
enum OrderEvent: String, CaseIterable, Sendable {
    // The saga: listings' answer to the reservation, billing's word on the payment.
    case stockReserved = "given its stock"
    case stockRejected = "refused its stock"
    case paymentSucceeded = "paid"
    // Timers.
    case paymentDeadlinePassed = "expired unpaid"
    case receiptAssumed = "assumed received"
    case reviewWindowClosed = "completed"
    // The parties.
    case cancelByBuyer = "canceled by its buyer"
    case cancelByVendor = "canceled by its vendor"
    case ship = "shipped"
    case deliver = "delivered"
    case receive = "received"
    /// The second of the order's two reviews: both are published and the window closes early.
    case reviewsWritten = "completed by both reviews"
    case openDispute = "disputed"
    case withdrawDispute = "returned from its dispute"
    // A moderator.
    case resolveByRelease = "released to its vendor"
    case resolveByRefund = "refunded"
}

/// The order's durable timers.
enum OrderTimer: String, Sendable, CaseIterable {
    /// 15 minutes after placing: unpaid orders are canceled and their stock released.
    case paymentDeadline
    /// 14 days after delivery: receipt is assumed.
    case assumedReceipt
    /// 7 days after receipt: the review window closes and the order completes.
    case reviewWindow
}

/// What a transition obliges its handler to do in the same transaction: the facts other services
/// act on go out through the outbox (listings releases stock on `order.canceled`; billing
/// refunds, releases or freezes the escrowed money on `order.canceled`, `order.received`,
/// `dispute.opened`, `dispute.resolved`), and timers are durable rows.
enum OrderEffect: Equatable, Sendable {
    case emit(OrderFact)
    case schedule(OrderTimer)
    case cancel(OrderTimer)
    /// The buyer's whole payment goes back (a cancellation after payment, stock refused after
    /// payment, a payment that arrived after the order was canceled).
    case refundInFull

    /// The order events (`order.<fact>`, `dispute.<fact>`) of the event catalogue.
    enum Fact: String, Sendable, CaseIterable {
        case paid, canceled, shipped, delivered, received, completed
        case disputeOpened = "dispute_opened"
        case disputeWithdrawn = "dispute_withdrawn"
        case disputeResolved = "dispute_resolved"
    }
}

typealias OrderFact = OrderEffect.Fact

/// The order's transition table: pure, no I/O, no clock. A refused pair is a 409
/// `invalid-transition` for a request; for a timer or another service's answer it is stale (the
/// order moved on) and is dropped with a log line.
enum OrderStateMachine {
    static func transition(from state: OrderStatus, on event: OrderEvent) throws -> (OrderStatus, [OrderEffect]) {
        switch (state, event) {
        // The saga before payment.
        case (.pendingPayment, .stockReserved), (.paid, .stockReserved):
            (state, [])
        case (.pendingPayment, .stockRejected):
            (.canceled, [.cancel(.paymentDeadline), .emit(.canceled)])
        case (.paid, .stockRejected):
            (.canceled, [.refundInFull, .emit(.canceled)])
        case (.pendingPayment, .paymentSucceeded):
            (.paid, [.cancel(.paymentDeadline), .emit(.paid)])
        case (.pendingPayment, .paymentDeadlinePassed):
            (.canceled, [.emit(.canceled)])
        // A payment that lands after the order was canceled (for lateness, refused stock, the
        // buyer) is handed back at once; a repeated word about a payment already taken changes nothing.
        case (.canceled, .paymentSucceeded):
            (.canceled, [.refundInFull])
        case (.paid, .paymentSucceeded):
            (.paid, [])

        // Cancellation: the buyer before payment; either party after payment, before shipping.
        case (.pendingPayment, .cancelByBuyer):
            (.canceled, [.cancel(.paymentDeadline), .emit(.canceled)])
        case (.paid, .cancelByBuyer), (.paid, .cancelByVendor):
            (.canceled, [.refundInFull, .emit(.canceled)])

        // Fulfilment.
        case (.paid, .ship):
            (.shipped, [.emit(.shipped)])
        case (.shipped, .deliver):
            (.delivered, [.schedule(.assumedReceipt), .emit(.delivered)])
        case (.delivered, .receive):
            (.received, [.cancel(.assumedReceipt), .schedule(.reviewWindow), .emit(.received)])
        case (.delivered, .receiptAssumed):
            (.received, [.schedule(.reviewWindow), .emit(.received)])
        case (.received, .reviewWindowClosed):
            (.completed, [.emit(.completed)])
        case (.received, .reviewsWritten):
            (.completed, [.cancel(.reviewWindow), .emit(.completed)])

        // Disputes.
        case (.delivered, .openDispute):
            (.disputed, [.cancel(.assumedReceipt), .emit(.disputeOpened)])
        case (.disputed, .withdrawDispute):
            (.delivered, [.schedule(.assumedReceipt), .emit(.disputeWithdrawn)])
        case (.disputed, .resolveByRelease):
            (.received, [.schedule(.reviewWindow), .emit(.disputeResolved), .emit(.received)])
        case (.disputed, .resolveByRefund):
            (.refunded, [.emit(.disputeResolved)])

        default:
            throw Problem.invalidTransition(event.rawValue, from: state.phrase, resource: "order")
        }
    }
}
