import Contracts
import Foundation
import Platform

/// What messaging keeps of other services' facts, fed by their events: listings' titles and
/// vendors, orders' parties and status (and the pairs that have paid, which unmasks contact
/// details), and where each user's mail goes. Newer facts win.
enum Projections {
    /// An order's status, ranked so an event never moves the projection backwards.
    static let statusRank = ["pending_payment": 0, "paid": 1, "shipped": 2, "delivered": 3, "received": 4, "completed": 5, "canceled": 6]

    static func register(into handlers: inout EventHandlers) {
        for contract in [ListingEvents.published, ListingEvents.updated, ListingEvents.withdrawn, ListingEvents.sold, ListingEvents.removed] {
            handlers.on(contract) { listing, _, tx in
                try await tx.query("""
                    INSERT INTO listing_facts (listing_id, vendor_id, title, published, version)
                    VALUES (\(listing.listingId), \(listing.vendorId), \(listing.title), \(listing.published), \(listing.version))
                    ON CONFLICT (listing_id) DO UPDATE SET title = EXCLUDED.title, published = EXCLUDED.published, version = EXCLUDED.version
                    WHERE listing_facts.version < EXCLUDED.version
                    """)
            }
        }
        handlers.on(OrderEvents.placed) { placed, event, tx in
            try await tx.query("""
                INSERT INTO order_facts (order_id, listing_id, buyer_id, vendor_id, status, total_amount, currency, updated_at)
                VALUES (\(placed.orderId), \(placed.listingId), \(placed.buyerId),
                        coalesce(\(placed.vendorId), (SELECT vendor_id FROM listing_facts WHERE listing_id = \(placed.listingId))),
                        'pending_payment', \(placed.totalAmount), \(placed.currency), \(event.time))
                ON CONFLICT (order_id) DO UPDATE SET vendor_id = coalesce(order_facts.vendor_id, EXCLUDED.vendor_id),
                    total_amount = coalesce(order_facts.total_amount, EXCLUDED.total_amount), currency = coalesce(order_facts.currency, EXCLUDED.currency)
                """)
        }
        handlers.on(OrderEvents.paid) { paid, event, tx in
            try await advance(paid.orderId, listing: paid.listingId, buyer: paid.buyerId, vendor: paid.vendorId, to: "paid", at: event.time, in: tx)
            // From now on the two may share contact details.
            try await tx.query("""
                INSERT INTO paid_pairs (buyer_id, vendor_id, paid_at)
                SELECT buyer_id, vendor_id, \(event.time) FROM order_facts WHERE order_id = \(paid.orderId) AND vendor_id IS NOT NULL
                ON CONFLICT DO NOTHING
                """)
        }
        handlers.on(OrderEvents.shipped) { shipped, event, tx in
            try await advance(shipped.orderId, listing: shipped.listingId, buyer: shipped.buyerId, vendor: shipped.vendorId, to: "shipped", at: event.time, in: tx)
        }
        handlers.on(OrderEvents.delivered) { delivered, event, tx in
            try await advance(delivered.orderId, listing: delivered.listingId, buyer: delivered.buyerId, vendor: delivered.vendorId, to: "delivered", at: event.time, in: tx)
        }
        handlers.on(OrderEvents.received) { received, event, tx in
            try await advance(received.orderId, listing: received.listingId, buyer: received.buyerId, vendor: received.vendorId, to: "received", at: event.time, in: tx)
        }
        handlers.on(OrderEvents.completed) { completed, event, tx in
            try await advance(completed.orderId, listing: completed.listingId, buyer: completed.buyerId, vendor: completed.vendorId, to: "completed", at: event.time, in: tx)
        }
        handlers.on(OrderEvents.canceled) { canceled, event, tx in
            try await advance(canceled.orderId, listing: canceled.listingId, buyer: canceled.buyerId, vendor: canceled.vendorId, to: "canceled", at: event.time, in: tx)
        }
        handlers.on(NotificationEvents.emailChanged) { address, event, tx in
            try await tx.query("""
                INSERT INTO recipients (user_id, email, email_verified, updated_at)
                VALUES (\(address.userId), \(address.email), \(address.verified), \(event.time))
                ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, email_verified = EXCLUDED.email_verified, updated_at = EXCLUDED.updated_at
                WHERE recipients.updated_at <= EXCLUDED.updated_at
                """)
        }
    }

    /// Moves the order's status forward (never back), creating the row if `placed` has not arrived.
    static func advance(_ order: UUID, listing: UUID, buyer: UUID?, vendor: UUID?, to status: String, at time: Date, in tx: Transaction) async throws {
        let rank = statusRank[status] ?? 0
        let ranks = statusRank.sorted { $0.value < $1.value }.map(\.key)
        try await tx.query("""
            INSERT INTO order_facts (order_id, listing_id, buyer_id, vendor_id, status, paid_at, updated_at)
            SELECT \(order), \(listing), \(buyer), \(vendor), \(status), CASE WHEN \(status) = 'paid' THEN \(time) END, \(time)
            WHERE \(buyer)::uuid IS NOT NULL
            ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
                vendor_id = coalesce(order_facts.vendor_id, EXCLUDED.vendor_id),
                paid_at = coalesce(order_facts.paid_at, EXCLUDED.paid_at)
            WHERE array_position(\(ranks), order_facts.status) - 1 < \(rank)
            """)
    }
}
