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
    /// The most orders (disputes, reviews) one data export lists (the newest).
    static let exportLimit = 1000
    /// What an erased user's words become where the record itself must stay.
    static let erasedText = "[removed at the author's request]"

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
        // Orders keep the buyer's and vendor's ids and amounts (money records must stay); what the
        // user wrote or gave — the shipping address, notes, dispute texts and evidence, reviews and
        // replies — goes.
        PrivacyParticipant.register(
            service: Self.name,
            export: { user, transaction in
                let profile = try await UsersProjection.exportJSON(user, in: transaction)
                let orders = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', o.id, 'buyerId', o.buyer_id, 'vendorId', o.vendor_id, 'status', o.status,
                                                               'listingTitle', o.listing_title, 'totalAmount', o.total_amount, 'currency', o.currency,
                                                               'shippingAddress', CASE WHEN o.buyer_id = \(user) THEN o.shipping_address END,
                                                               'createdAt', o.created_at)
                                             ORDER BY o.created_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM orders WHERE buyer_id = \(user) OR vendor_id = \(user)
                          ORDER BY created_at DESC LIMIT \(Self.exportLimit)) o
                    """, as: String.self) ?? "[]"
                let disputes = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', d.id, 'orderId', d.order_id, 'status', d.status, 'reason', d.reason,
                                                               'description', d.description, 'outcome', d.outcome, 'openedAt', d.opened_at,
                                                               'evidence', (SELECT coalesce(json_agg(json_build_object('text', e.body, 'attachments', e.attachments,
                                                                                                                     'createdAt', e.created_at)
                                                                                                   ORDER BY e.created_at), '[]'::json)
                                                                            FROM dispute_evidence e WHERE e.dispute_id = d.id AND e.author_id = \(user)))
                                             ORDER BY d.opened_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM disputes WHERE buyer_id = \(user) OR vendor_id = \(user)
                          ORDER BY opened_at DESC LIMIT \(Self.exportLimit)) d
                    """, as: String.self) ?? "[]"
                let reviews = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', r.id, 'orderId', r.order_id, 'authorRole', r.author_role, 'rating', r.rating,
                                                               'text', r.body, 'status', r.status, 'createdAt', r.created_at)
                                             ORDER BY r.created_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM reviews WHERE author_id = \(user) ORDER BY created_at DESC LIMIT \(Self.exportLimit)) r
                    """, as: String.self) ?? "[]"
                return "{\"profile\":\(profile),\"orders\":\(orders),\"disputes\":\(disputes),\"reviews\":\(reviews)}"
            },
            erase: { user, transaction in
                try await UsersProjection.erase(user, in: transaction)
                try await transaction.query("""
                    UPDATE orders SET shipping_address = jsonb_build_object('name', 'Deleted user', 'line1', '[erased]', 'line2', NULL,
                                                                            'city', '[erased]', 'postalCode', '[erased]',
                                                                            'country', shipping_address->>'country')
                    WHERE buyer_id = \(user)
                    """)
                try await transaction.query("UPDATE order_history SET note = NULL WHERE actor_id = \(user) AND note IS NOT NULL")
                try await transaction.query("UPDATE disputes SET description = \(Self.erasedText) WHERE buyer_id = \(user)")
                try await transaction.query("""
                    UPDATE dispute_evidence SET body = \(Self.erasedText), attachments = '{}' WHERE author_id = \(user)
                    """)
                try await transaction.query("UPDATE reviews SET body = \(Self.erasedText) WHERE author_id = \(user)")
                try await transaction.query("""
                    UPDATE reviews SET reply = \(Self.erasedText) WHERE subject_id = \(user) AND author_role = 'buyer' AND reply IS NOT NULL
                    """)
            },
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
