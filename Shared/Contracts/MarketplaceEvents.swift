import Foundation

// The domain events between listings, billing and orders. Amounts are integer minor units with
// an ISO 4217 code beside them (this target depends on nothing, so no `Money` type here).

/// Billing's word on what a vendor's subscription allows, on `billing.entitlements.v1` (key: vendor id).
public enum BillingEvents {
    public static let entitlementChanged = EventContract<EntitlementChangedV1>(
        EventTypes.entitlementChanged, topic: Topics.billingEntitlements, aggregate: "vendors") { $0.vendorId }

    // What messaging mails the vendor about; one payload, the type says what happened.
    public static let trialEnding = notice(EventTypes.subscriptionTrialEnding)
    public static let paymentFailed = notice(EventTypes.subscriptionPaymentFailed)
    public static let suspended = notice(EventTypes.subscriptionSuspended)
    public static let reactivated = notice(EventTypes.subscriptionReactivated)
    public static let canceled = notice(EventTypes.subscriptionCanceled)

    private static func notice(_ type: String) -> EventContract<SubscriptionNoticeV1> {
        EventContract(type, topic: Topics.billingSubscriptions, aggregate: "subscriptions") { $0.subscriptionId }
    }
}

/// `marketplace.billing.subscription.<trial_ending|payment_failed|suspended|reactivated|canceled>.v1`:
/// something the vendor should hear about their subscription. `amountDue` and `currency` are the
/// open invoice's (null when none); `nextAttemptAt` is the next dunning retry (null when none);
/// `trialEnd` is set while trialing.
public struct SubscriptionNoticeV1: Codable, Sendable, Equatable {
    public var subscriptionId: UUID
    public var vendorId: UUID
    public var status: String
    public var planName: String
    public var amountDue: Int64?
    public var currency: String?
    public var invoiceId: UUID?
    public var nextAttemptAt: Date?
    public var trialEnd: Date?
    public var occurredAt: Date

    public init(subscriptionId: UUID, vendorId: UUID, status: String, planName: String, amountDue: Int64?, currency: String?,
                invoiceId: UUID?, nextAttemptAt: Date?, trialEnd: Date?, occurredAt: Date) {
        self.subscriptionId = subscriptionId
        self.vendorId = vendorId
        self.status = status
        self.planName = planName
        self.amountDue = amountDue
        self.currency = currency
        self.invoiceId = invoiceId
        self.nextAttemptAt = nextAttemptAt
        self.trialEnd = trialEnd
        self.occurredAt = occurredAt
    }
}

/// `marketplace.billing.entitlement.changed.v1`: everything a vendor may do now, as a whole
/// (not a delta). `version` increases per vendor; a consumer keeps the highest it has seen, so an
/// older event arriving late never overwrites a newer one. `reason` says what changed it
/// (`trial_started`, `payment_failed`, `subscription_suspended`, …); `subscriptionStatus` is
/// billing's status (`trialing`, `active`, `past_due`, `suspended`, `paused`, `canceled`, …).
public struct EntitlementChangedV1: Codable, Sendable, Equatable {
    public var vendorId: UUID
    public var mayPublish: Bool
    public var mayList: Bool
    public var listingQuota: Int
    public var commissionBps: Int
    public var subscriptionStatus: String
    public var reason: String
    public var effectiveAt: Date
    public var version: Int64

    public init(vendorId: UUID, mayPublish: Bool, mayList: Bool, listingQuota: Int, commissionBps: Int,
                subscriptionStatus: String, reason: String, effectiveAt: Date, version: Int64) {
        self.vendorId = vendorId
        self.mayPublish = mayPublish
        self.mayList = mayList
        self.listingQuota = listingQuota
        self.commissionBps = commissionBps
        self.subscriptionStatus = subscriptionStatus
        self.reason = reason
        self.effectiveAt = effectiveAt
        self.version = version
    }
}

/// The order's lifecycle facts that listings (stock) and the others react to, on
/// `orders.orders.v1` (key: order id).
public enum OrderEvents {
    public static let placed = EventContract<OrderPlacedV1>(EventTypes.orderPlaced, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let paid = EventContract<OrderPaidV1>(EventTypes.orderPaid, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let canceled = EventContract<OrderCanceledV1>(EventTypes.orderCanceled, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let shipped = EventContract<OrderShippedV1>(EventTypes.orderShipped, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let delivered = EventContract<OrderDeliveredV1>(EventTypes.orderDelivered, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let received = EventContract<OrderReceivedV1>(EventTypes.orderReceived, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let completed = EventContract<OrderCompletedV1>(EventTypes.orderCompleted, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
}

/// A buyer's dispute of a delivered order, on `orders.orders.v1` (key: order id, so it stays in
/// order with the order's own facts). Billing freezes the vendor's money on `opened`, unfreezes it
/// on `withdrawn`, and moves it as `resolved` says; messaging tells the parties (and, on
/// `escalated`, the admins).
public enum DisputeEvents {
    public static let opened = EventContract<DisputeOpenedV1>(EventTypes.disputeOpened, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let withdrawn = EventContract<DisputeChangedV1>(EventTypes.disputeWithdrawn, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let escalated = EventContract<DisputeChangedV1>(EventTypes.disputeEscalated, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let resolved = EventContract<DisputeResolvedV1>(EventTypes.disputeResolved, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
}

/// `marketplace.orders.dispute.opened.v1`: the order is `disputed`; `reason` is one of the API's
/// dispute reasons (`not_as_described`, `damaged`, `not_received`, `health`, `other`).
public struct DisputeOpenedV1: Codable, Sendable, Equatable {
    public var disputeId: UUID
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var reason: String
    public var openedAt: Date

    public init(disputeId: UUID, orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, reason: String, openedAt: Date) {
        self.disputeId = disputeId
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.reason = reason
        self.openedAt = openedAt
    }
}

/// `marketplace.orders.dispute.withdrawn.v1` (the buyer took it back: the order is `delivered`
/// again) and `…dispute.escalated.v1` (14 days unresolved: now the admins' to decide).
public struct DisputeChangedV1: Codable, Sendable, Equatable {
    public var disputeId: UUID
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var at: Date

    public init(disputeId: UUID, orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, at: Date) {
        self.disputeId = disputeId
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.at = at
    }
}

/// `marketplace.orders.dispute.resolved.v1`: a moderator's decision. `release`: the money goes to
/// the vendor (`refundAmount` 0; the order is `received`). `refund`: `refundAmount` back to the
/// buyer and the rest, if any, released (the order is `refunded`).
public struct DisputeResolvedV1: Codable, Sendable, Equatable {
    public var disputeId: UUID
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    /// `release` or `refund`.
    public var outcome: String
    public var refundAmount: Int64
    public var totalAmount: Int64
    public var currency: String
    public var resolvedAt: Date

    public init(disputeId: UUID, orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, outcome: String, refundAmount: Int64,
                totalAmount: Int64, currency: String, resolvedAt: Date) {
        self.disputeId = disputeId
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.outcome = outcome
        self.refundAmount = refundAmount
        self.totalAmount = totalAmount
        self.currency = currency
        self.resolvedAt = resolvedAt
    }
}

/// Reviews after an order, on `orders.orders.v1`: each review as it is published (key: order id)
/// and a vendor's rating whenever it changes (key: vendor id), for listings' vendor rating and
/// search's `minRating`.
public enum ReviewEvents {
    public static let published = EventContract<ReviewPublishedV1>(EventTypes.reviewPublished, topic: Topics.ordersOrders, aggregate: "orders") { $0.orderId }
    public static let ratingChanged = EventContract<VendorRatingChangedV1>(EventTypes.vendorRatingChanged, topic: Topics.ordersOrders,
                                                                          aggregate: "vendors") { $0.vendorId }
}

/// `marketplace.orders.review.published.v1`: a review is public now (`authorRole` `buyer`: of
/// the vendor; `vendor`: of the buyer).
public struct ReviewPublishedV1: Codable, Sendable, Equatable {
    public var reviewId: UUID
    public var orderId: UUID
    public var authorId: UUID
    public var subjectId: UUID
    public var authorRole: String
    public var rating: Int
    public var publishedAt: Date

    public init(reviewId: UUID, orderId: UUID, authorId: UUID, subjectId: UUID, authorRole: String, rating: Int, publishedAt: Date) {
        self.reviewId = reviewId
        self.orderId = orderId
        self.authorId = authorId
        self.subjectId = subjectId
        self.authorRole = authorRole
        self.rating = rating
        self.publishedAt = publishedAt
    }
}

/// `marketplace.orders.vendor.rating_changed.v1`: the vendor's published reviews now add up to
/// `ratingSum` over `ratingCount` (exact; the average is theirs to round). `version` grows with
/// each change: apply only a newer one.
public struct VendorRatingChangedV1: Codable, Sendable, Equatable {
    public var vendorId: UUID
    public var ratingSum: Int64
    public var ratingCount: Int
    public var version: Int64
    public var changedAt: Date

    public init(vendorId: UUID, ratingSum: Int64, ratingCount: Int, version: Int64, changedAt: Date) {
        self.vendorId = vendorId
        self.ratingSum = ratingSum
        self.ratingCount = ratingCount
        self.version = version
        self.changedAt = changedAt
    }
}

/// `marketplace.orders.order.placed.v1`: a buyer asks for `quantity` units of a listing; listings
/// answers with `stock.reserved` (and the snapshot to price from) or `stock.rejected`.
///
/// The price is the one the order was placed at (orders' listing snapshot, in minor units) with the
/// vendor's commission on it: billing takes payment of `totalAmount`; if listings reserves the stock
/// at another price, orders cancels the order. Absent on events from before prices were stated.
public struct OrderPlacedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var quantity: Int
    public var placedAt: Date
    public var vendorId: UUID?
    public var unitPriceAmount: Int64?
    public var totalAmount: Int64?
    public var commissionAmount: Int64?
    public var currency: String?
    /// When the order is canceled unless paid.
    public var paymentDueAt: Date?

    public init(orderId: UUID, listingId: UUID, buyerId: UUID, quantity: Int, placedAt: Date, vendorId: UUID? = nil,
                unitPriceAmount: Int64? = nil, totalAmount: Int64? = nil, commissionAmount: Int64? = nil, currency: String? = nil,
                paymentDueAt: Date? = nil) {
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.quantity = quantity
        self.placedAt = placedAt
        self.vendorId = vendorId
        self.unitPriceAmount = unitPriceAmount
        self.totalAmount = totalAmount
        self.commissionAmount = commissionAmount
        self.currency = currency
        self.paymentDueAt = paymentDueAt
    }
}

/// `marketplace.orders.order.shipped.v1`: the vendor sent it.
public struct OrderShippedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var carrier: String
    public var trackingNumber: String
    public var shippedAt: Date

    public init(orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, carrier: String, trackingNumber: String, shippedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.carrier = carrier
        self.trackingNumber = trackingNumber
        self.shippedAt = shippedAt
    }
}

/// `marketplace.orders.order.delivered.v1`: the vendor says it arrived; receipt is assumed at
/// `receiptAssumedAt` unless the buyer confirms or disputes first.
public struct OrderDeliveredV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var deliveredAt: Date
    public var receiptAssumedAt: Date

    public init(orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, deliveredAt: Date, receiptAssumedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.deliveredAt = deliveredAt
        self.receiptAssumedAt = receiptAssumedAt
    }
}

/// `marketplace.orders.order.received.v1`: the buyer has it (confirmed, or assumed after 14 days):
/// the money leaves escrow as stated here, `vendorAmount` to the vendor and `commissionAmount` to
/// the marketplace (they add up to `totalAmount` less `refundedAmount`).
public struct OrderReceivedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var totalAmount: Int64
    public var refundedAmount: Int64
    public var commissionAmount: Int64
    public var vendorAmount: Int64
    public var currency: String
    /// True when receipt was assumed (14 days after delivery) rather than confirmed.
    public var assumed: Bool
    public var receivedAt: Date

    public init(orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, totalAmount: Int64, refundedAmount: Int64,
                commissionAmount: Int64, vendorAmount: Int64, currency: String, assumed: Bool, receivedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.totalAmount = totalAmount
        self.refundedAmount = refundedAmount
        self.commissionAmount = commissionAmount
        self.vendorAmount = vendorAmount
        self.currency = currency
        self.assumed = assumed
        self.receivedAt = receivedAt
    }
}

/// `marketplace.orders.order.completed.v1`: the review window closed; nothing more happens to it.
public struct OrderCompletedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var completedAt: Date

    public init(orderId: UUID, listingId: UUID, buyerId: UUID, vendorId: UUID, completedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.completedAt = completedAt
    }
}

/// `marketplace.orders.order.paid.v1`: the buyer's payment succeeded; the reservation is final.
public struct OrderPaidV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var paidAt: Date
    /// The parties (absent on events from before they were stated).
    public var buyerId: UUID?
    public var vendorId: UUID?

    public init(orderId: UUID, listingId: UUID, paidAt: Date, buyerId: UUID? = nil, vendorId: UUID? = nil) {
        self.orderId = orderId
        self.listingId = listingId
        self.paidAt = paidAt
        self.buyerId = buyerId
        self.vendorId = vendorId
    }
}

/// `marketplace.orders.order.canceled.v1`: the order will not go ahead (`reason`: `payment_timeout`,
/// `buyer_canceled`, `vendor_canceled`, `stock_rejected`, …); its stock goes back.
public struct OrderCanceledV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var reason: String
    public var canceledAt: Date
    /// The parties (absent on events from before they were stated).
    public var buyerId: UUID?
    public var vendorId: UUID?
    /// Whether the buyer had paid: billing refunds what it holds for the order in full.
    public var wasPaid: Bool?

    public init(orderId: UUID, listingId: UUID, reason: String, canceledAt: Date, buyerId: UUID? = nil, vendorId: UUID? = nil,
                wasPaid: Bool? = nil) {
        self.orderId = orderId
        self.listingId = listingId
        self.reason = reason
        self.canceledAt = canceledAt
        self.buyerId = buyerId
        self.vendorId = vendorId
        self.wasPaid = wasPaid
    }
}

/// Billing's word on an order's payment, on `billing.payments.v1` (key: order id): what orders
/// shows as the order's `payment` and moves the order on.
public enum PaymentEvents {
    public static let intentCreated = EventContract<PaymentIntentV1>(EventTypes.paymentIntentCreated, topic: Topics.billingPayments, aggregate: "orders") { $0.orderId }
    public static let succeeded = EventContract<PaymentIntentV1>(EventTypes.paymentSucceeded, topic: Topics.billingPayments, aggregate: "orders") { $0.orderId }
    public static let refunded = EventContract<PaymentRefundedV1>(EventTypes.paymentRefunded, topic: Topics.billingPayments, aggregate: "orders") { $0.orderId }
    public static let chargebackOpened = EventContract<ChargebackV1>(EventTypes.chargebackOpened, topic: Topics.billingPayments, aggregate: "orders") { $0.orderId }
    public static let chargebackClosed = EventContract<ChargebackV1>(EventTypes.chargebackClosed, topic: Topics.billingPayments, aggregate: "orders") { $0.orderId }
}

/// `marketplace.billing.payment.chargeback_opened.v1` and `…chargeback_closed.v1`: the buyer's
/// bank disputes an order's payment (`status` `open`), and later decides it (`won`: the money came
/// back; `lost`: it went to the buyer). Orders joins it to the order's open dispute, if any.
public struct ChargebackV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var chargebackId: String
    public var amount: Int64
    public var currency: String
    public var reason: String
    /// `open`, `won` or `lost`.
    public var status: String
    public var occurredAt: Date

    public init(orderId: UUID, chargebackId: String, amount: Int64, currency: String, reason: String, status: String, occurredAt: Date) {
        self.orderId = orderId
        self.chargebackId = chargebackId
        self.amount = amount
        self.currency = currency
        self.reason = reason
        self.status = status
        self.occurredAt = occurredAt
    }
}

/// `marketplace.billing.payment.intent_created.v1` and `…payment.succeeded.v1`: the order's
/// payment intent (`clientSecret` for the buyer's client to confirm it) and its status.
public struct PaymentIntentV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var intentId: String
    public var clientSecret: String?
    public var status: String
    public var amount: Int64
    public var currency: String
    public var occurredAt: Date

    public init(orderId: UUID, intentId: String, clientSecret: String?, status: String, amount: Int64, currency: String, occurredAt: Date) {
        self.orderId = orderId
        self.intentId = intentId
        self.clientSecret = clientSecret
        self.status = status
        self.amount = amount
        self.currency = currency
        self.occurredAt = occurredAt
    }
}

/// `marketplace.billing.payment.refunded.v1`: money went back to the buyer (`amount` of it; the
/// order's refunds so far add up to `refundedTotal`).
public struct PaymentRefundedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var intentId: String
    public var refundId: String
    public var amount: Int64
    public var refundedTotal: Int64
    public var currency: String
    public var refundedAt: Date

    public init(orderId: UUID, intentId: String, refundId: String, amount: Int64, refundedTotal: Int64, currency: String, refundedAt: Date) {
        self.orderId = orderId
        self.intentId = intentId
        self.refundId = refundId
        self.amount = amount
        self.refundedTotal = refundedTotal
        self.currency = currency
        self.refundedAt = refundedAt
    }
}

/// Listings' answers about stock, on `listings.stock.v1` (key: order id, so one order's answers
/// stay in order).
public enum StockEvents {
    public static let reserved = EventContract<StockReservedV1>(EventTypes.stockReserved, topic: Topics.listingsStock, aggregate: "orders") { $0.orderId }
    public static let rejected = EventContract<StockRejectedV1>(EventTypes.stockRejected, topic: Topics.listingsStock, aggregate: "orders") { $0.orderId }
    public static let released = EventContract<StockReleasedV1>(EventTypes.stockReleased, topic: Topics.listingsStock, aggregate: "orders") { $0.orderId }
}

/// `marketplace.listings.stock.reserved.v1`: `quantity` units are held for the order, with the
/// listing as it was at that moment: the order is priced from this, never from the client.
public struct StockReservedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var vendorId: UUID
    public var buyerId: UUID
    public var quantity: Int
    public var title: String
    public var unitPriceAmount: Int64
    public var currency: String
    public var reservedAt: Date

    public init(orderId: UUID, listingId: UUID, vendorId: UUID, buyerId: UUID, quantity: Int, title: String,
                unitPriceAmount: Int64, currency: String, reservedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.vendorId = vendorId
        self.buyerId = buyerId
        self.quantity = quantity
        self.title = title
        self.unitPriceAmount = unitPriceAmount
        self.currency = currency
        self.reservedAt = reservedAt
    }
}

/// `marketplace.listings.stock.rejected.v1`: nothing was reserved. `reason`: `insufficient_stock`,
/// `listing_unavailable` (not published, hidden, or unknown), `own_listing`.
public struct StockRejectedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var reason: String
    public var rejectedAt: Date

    public init(orderId: UUID, listingId: UUID, reason: String, rejectedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.reason = reason
        self.rejectedAt = rejectedAt
    }
}

/// `marketplace.listings.stock.released.v1`: a held reservation went back into stock (its order was canceled).
public struct StockReleasedV1: Codable, Sendable, Equatable {
    public var orderId: UUID
    public var listingId: UUID
    public var quantity: Int
    public var releasedAt: Date

    public init(orderId: UUID, listingId: UUID, quantity: Int, releasedAt: Date) {
        self.orderId = orderId
        self.listingId = listingId
        self.quantity = quantity
        self.releasedAt = releasedAt
    }
}

/// A listing's public life, on `listings.listings.v1` (key: listing id): what orders project to
/// take orders, what messaging shows in conversations, what caches drop.
public enum ListingEvents {
    public static let published = EventContract<ListingV1>(EventTypes.listingPublished, topic: Topics.listingsListings, aggregate: "listings") { $0.listingId }
    public static let updated = EventContract<ListingV1>(EventTypes.listingUpdated, topic: Topics.listingsListings, aggregate: "listings") { $0.listingId }
    public static let withdrawn = EventContract<ListingV1>(EventTypes.listingWithdrawn, topic: Topics.listingsListings, aggregate: "listings") { $0.listingId }
    public static let sold = EventContract<ListingV1>(EventTypes.listingSold, topic: Topics.listingsListings, aggregate: "listings") { $0.listingId }
    public static let removed = EventContract<ListingV1>(EventTypes.listingRemoved, topic: Topics.listingsListings, aggregate: "listings") { $0.listingId }
    public static let moderated = EventContract<ListingModeratedV1>(EventTypes.listingModerated, topic: Topics.listingsListings, aggregate: "listings") { $0.listingId }
}

/// A listing as it is after the change the event's type names. `published` tells whether buyers
/// can find and order it now; `hiddenReason` says why a published one is not shown
/// (`vendor_suspended`, `subscription_inactive`, `over_quota`).
public struct ListingV1: Codable, Sendable, Equatable {
    public var listingId: UUID
    public var vendorId: UUID
    public var category: String
    public var title: String
    public var status: String
    public var hiddenReason: String?
    public var published: Bool
    public var priceAmount: Int64
    public var currency: String
    public var quantityAvailable: Int
    public var version: Int
    public var changedAt: Date

    public init(listingId: UUID, vendorId: UUID, category: String, title: String, status: String, hiddenReason: String?,
                published: Bool, priceAmount: Int64, currency: String, quantityAvailable: Int, version: Int, changedAt: Date) {
        self.listingId = listingId
        self.vendorId = vendorId
        self.category = category
        self.title = title
        self.status = status
        self.hiddenReason = hiddenReason
        self.published = published
        self.priceAmount = priceAmount
        self.currency = currency
        self.quantityAvailable = quantityAvailable
        self.version = version
        self.changedAt = changedAt
    }
}

/// `marketplace.listings.listing.moderated.v1`: a moderator's decision (`approved`, `rejected`,
/// `removed`), with the reason the vendor is told; messaging notifies the vendor.
public struct ListingModeratedV1: Codable, Sendable, Equatable {
    public var listingId: UUID
    public var vendorId: UUID
    public var title: String
    public var decision: String
    public var reason: String?
    public var moderatorId: UUID
    public var decidedAt: Date

    public init(listingId: UUID, vendorId: UUID, title: String, decision: String, reason: String?, moderatorId: UUID, decidedAt: Date) {
        self.listingId = listingId
        self.vendorId = vendorId
        self.title = title
        self.decision = decision
        self.reason = reason
        self.moderatorId = moderatorId
        self.decidedAt = decidedAt
    }
}
