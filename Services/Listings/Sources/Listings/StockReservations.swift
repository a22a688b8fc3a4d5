import Contracts
import Foundation
import Platform
import PostgresNIO

/// Stock held for orders. A reservation is a row keyed by the order, written in the same
/// transaction as the listing's available count, so a redelivered `order.placed` (even under a new
/// event id) finds the row and reserves nothing more. The listing's row lock serialises buyers
/// racing for the last units: exactly as many reservations as there are units.
struct StockReservations: Sendable {
    let repository: ListingRepository
    let workflow: ListingWorkflow

    func reserve(_ order: OrderPlacedV1, in tx: Transaction) async throws {
        if try await tx.first("SELECT status FROM stock_reservations WHERE order_id = \(order.orderId)", as: String.self) != nil {
            tx.logger.debug("order already answered", metadata: ["order.id": "\(order.orderId)"])
            return
        }
        guard let listing = try await repository.lock(order.listingId, in: tx) else {
            return try await reject(order, reason: "listing_unavailable", in: tx)
        }
        if listing.vendorId == order.buyerId { return try await reject(order, reason: "own_listing", in: tx) }
        // Sold out is a stock answer (the listing is still on show); anything else is not for sale.
        if listing.status == .sold, !listing.isHidden { return try await reject(order, reason: "insufficient_stock", in: tx) }
        guard listing.status == .published, !listing.isHidden else { return try await reject(order, reason: "listing_unavailable", in: tx) }
        guard order.quantity > 0, listing.quantityAvailable >= order.quantity else {
            return try await reject(order, reason: "insufficient_stock", in: tx)
        }
        let available = listing.quantityAvailable - order.quantity
        var effects: [ListingEffect] = [.emitUpdated]
        var status = listing.status
        if available == 0 { (status, effects) = try ListingStateMachine.transition(from: status, on: .sellOut) }
        try await tx.query("""
            UPDATE listings SET quantity_available = \(available), status = \(status.rawValue), updated_at = \(tx.now)
            WHERE id = \(listing.id)
            """)
        try await insert(order, status: "held", reason: nil, in: tx)
        try await Outbox.emit(StockEvents.reserved, StockReservedV1(
            orderId: order.orderId, listingId: listing.id, vendorId: listing.vendorId, buyerId: order.buyerId, quantity: order.quantity,
            title: listing.title, unitPriceAmount: listing.price.amount, currency: listing.price.currency.code, reservedAt: tx.now), in: tx)
        _ = try await workflow.finish(listing.id, effects, in: tx)
        tx.logger.info("stock reserved", metadata: ["order.id": "\(order.orderId)", "listing.id": "\(listing.id)"])
    }

    /// Locks these listings in id order (a run of orders locks all its listings before it answers any).
    func lockListings(_ ids: [UUID], in tx: Transaction) async throws {
        try await tx.query("SELECT id FROM listings WHERE id = ANY(\(Array(Set(ids)))) ORDER BY id FOR UPDATE")
    }

    /// Locks the listings these orders hold stock of, in id order.
    func lockListings(ofOrders orders: [UUID], in tx: Transaction) async throws {
        try await tx.query("""
            SELECT l.id FROM listings l WHERE l.id IN (SELECT listing_id FROM stock_reservations WHERE order_id = ANY(\(orders)))
            ORDER BY l.id FOR UPDATE OF l
            """)
    }

    /// The order was paid: its units are sold for good.
    func commit(_ order: OrderPaidV1, in tx: Transaction) async throws {
        try await tx.query("""
            UPDATE stock_reservations SET status = 'committed', updated_at = \(tx.now) WHERE order_id = \(order.orderId) AND status = 'held'
            """)
    }

    /// The order will not go ahead: held or paid-for units go back, and a sold-out listing is on sale again.
    func release(_ order: OrderCanceledV1, in tx: Transaction) async throws {
        let rows = try await tx.query("""
            UPDATE stock_reservations SET status = 'released', reason = \(order.reason), updated_at = \(tx.now)
            WHERE order_id = \(order.orderId) AND status IN ('held', 'committed')
            RETURNING listing_id, quantity
            """)
        var released: (UUID, Int)?
        for try await row in rows.decode((UUID, Int).self) { released = row }
        guard let (listingId, quantity) = released else { return }
        try await Outbox.emit(StockEvents.released, StockReleasedV1(orderId: order.orderId, listingId: listingId, quantity: quantity,
                                                                    releasedAt: tx.now), in: tx)
        // A deleted listing keeps its reservations as facts; there is no stock to give back to.
        guard let listing = try await repository.lock(listingId, in: tx) else { return }
        let available = min(listing.quantity, listing.quantityAvailable + quantity)
        var status = listing.status
        var effects: [ListingEffect] = listing.status == .published ? [.emitUpdated] : []
        if status == .sold { (status, effects) = try ListingStateMachine.transition(from: status, on: .restock) }
        try await tx.query("""
            UPDATE listings SET quantity_available = \(available), status = \(status.rawValue), updated_at = \(tx.now)
            WHERE id = \(listingId)
            """)
        _ = try await workflow.finish(listingId, effects, in: tx)
        tx.logger.info("stock released", metadata: ["order.id": "\(order.orderId)", "listing.id": "\(listingId)"])
    }

    private func reject(_ order: OrderPlacedV1, reason: String, in tx: Transaction) async throws {
        try await insert(order, status: "rejected", reason: reason, in: tx)
        try await Outbox.emit(StockEvents.rejected, StockRejectedV1(orderId: order.orderId, listingId: order.listingId, reason: reason,
                                                                    rejectedAt: tx.now), in: tx)
        tx.logger.info("stock rejected", metadata: ["order.id": "\(order.orderId)", "stock.reason": "\(reason)"])
    }

    private func insert(_ order: OrderPlacedV1, status: String, reason: String?, in tx: Transaction) async throws {
        try await tx.query("""
            INSERT INTO stock_reservations (order_id, listing_id, buyer_id, quantity, status, reason, created_at, updated_at)
            VALUES (\(order.orderId), \(order.listingId), \(order.buyerId), \(max(order.quantity, 1)), \(status), \(reason), \(tx.now), \(tx.now))
            """)
    }
}
