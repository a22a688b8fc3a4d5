import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The orders service: the order state machine, disputes and reviews as the product grows.
/// Owns the `orders` schema.
public struct OrdersService: ServiceModule {
    public static let name = "orders"
    public static let defaultPort = 8084
    public static let consumedTopics = [Topics.identityUsers, Topics.listingsListings, Topics.billingEntitlements, Topics.listingsStock, Topics.billingPayments]
    /// The most orders one data export lists (the newest).
    static let exportLimit = 1000

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let workflow = OrderWorkflow()
    let disputes: DisputeWorkflow
    let reviews: ReviewWorkflow
    let controller: OrdersController
    let disputesController: DisputesController
    let reviewsController: ReviewsController

    public init(dependencies: ServiceDependencies) throws {
        disputes = DisputeWorkflow(orders: workflow)
        reviews = ReviewWorkflow(orders: workflow)
        reviewsController = ReviewsController(client: dependencies.postgres, workflow: reviews, bodyLimit: dependencies.settings.maxBodyBytes)
        controller = OrdersController(client: dependencies.postgres, workflow: workflow, bodyLimit: dependencies.settings.maxBodyBytes)
        disputesController = DisputesController(client: dependencies.postgres, workflow: disputes, bodyLimit: dependencies.settings.maxBodyBytes)
    }

    public func addRoutes(to router: ServiceRouter) {
        controller.addRoutes(to: router)
        disputesController.addRoutes(to: router)
        reviewsController.addRoutes(to: router)
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        let workflow = workflow
        UsersProjection.register(into: &handlers)
        ListingSnapshots.register(into: &handlers)
        VendorCommissions.register(into: &handlers)
        // The saga: listings' answers about stock, billing's about the payment.
        // A run of answers locks its orders first, in id order: one order's stock and payment answers
        // come on two topics, so two partitions' runs would otherwise lock the same orders crosswise.
        handlers.onBatch(StockEvents.reserved) { run, tx in
            try await workflow.orders.lockInOrder(run.map(\.payload.orderId), in: tx)
            for reserved in run { try await workflow.stockReserved(reserved.payload, in: tx) }
        }
        handlers.onBatch(StockEvents.rejected) { run, tx in
            try await workflow.orders.lockInOrder(run.map(\.payload.orderId), in: tx)
            for rejected in run { try await workflow.stockRejected(rejected.payload, in: tx) }
        }
        handlers.onBatch(PaymentEvents.intentCreated) { run, tx in
            try await workflow.orders.lockInOrder(run.map(\.payload.orderId), in: tx)
            for intent in run { try await workflow.intentCreated(intent.payload, in: tx) }
        }
        handlers.onBatch(PaymentEvents.succeeded) { run, tx in
            try await workflow.orders.lockInOrder(run.map(\.payload.orderId), in: tx)
            for intent in run { try await workflow.paymentSucceeded(intent.payload, in: tx) }
        }
        handlers.onBatch(PaymentEvents.refunded) { run, tx in
            try await workflow.orders.lockInOrder(run.map(\.payload.orderId), in: tx)
            for refund in run { try await workflow.paymentRefunded(refund.payload, in: tx) }
        }
        // The buyer's bank: a chargeback joins the order's dispute.
        let disputes = disputes
        handlers.on(PaymentEvents.chargebackOpened) { chargeback, _, tx in try await disputes.chargebackOpened(chargeback, in: tx) }
        handlers.on(PaymentEvents.chargebackClosed) { chargeback, _, tx in try await disputes.chargebackClosed(chargeback, in: tx) }
        // Orders keep the buyer's and vendor's ids (money records must stay); the projected name goes.
        PrivacyParticipant.register(
            service: Self.name,
            export: { user, transaction in
                let profile = try await UsersProjection.exportJSON(user, in: transaction)
                let orders = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', o.id, 'buyerId', o.buyer_id, 'vendorId', o.vendor_id, 'status', o.status,
                                                               'totalAmount', o.total_amount, 'currency', o.currency, 'createdAt', o.created_at)
                                             ORDER BY o.created_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM orders WHERE buyer_id = \(user) OR vendor_id = \(user)
                          ORDER BY created_at DESC LIMIT \(Self.exportLimit)) o
                    """, as: String.self) ?? "[]"
                return "{\"profile\":\(profile),\"orders\":\(orders)}"
            },
            erase: { user, transaction in try await UsersProjection.erase(user, in: transaction) },
            into: &handlers)
        return handlers
    }

    public var jobHandlers: JobHandlers {
        var handlers = JobHandlers()
        let workflow = workflow
        let reviews = reviews
        for timer in OrderTimer.allCases {
            handlers.on(OrderWorkflow.kind(of: timer)) { payload, _, tx in
                // The review window's end also publishes what was written.
                if timer == .reviewWindow { try await reviews.windowClosed(payload, in: tx) } else { try await workflow.timerFired(timer, payload, in: tx) }
            }
        }
        let disputes = disputes
        handlers.on(DisputeWorkflow.escalation) { payload, _, tx in try await disputes.escalate(payload, in: tx) }
        return handlers
    }
}
