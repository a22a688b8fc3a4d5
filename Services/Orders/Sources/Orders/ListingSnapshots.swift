import Contracts
import Foundation
import Platform
import PostgresNIO

/// A listing as orders knows it (`listing_snapshots`).
struct ListingSnapshot: Sendable, Equatable {
    var id: UUID
    var vendorId: UUID
    var title: String
    var status: String
    /// Published and not hidden: buyers can order it now.
    var orderable: Bool
    var price: Money
    var quantityAvailable: Int
    var version: Int
}

/// The listings projection: every `listings.listings.v1` event carries the whole listing with
/// its version, so each is an upsert that only a newer version wins (redelivered and reordered
/// events end in the latest state).
struct ListingSnapshots: Sendable {
    static let contracts = [ListingEvents.published, ListingEvents.updated, ListingEvents.withdrawn, ListingEvents.sold, ListingEvents.removed]

    static func register(into handlers: inout EventHandlers) {
        for contract in contracts {
            handlers.on(contract) { listing, _, tx in
                guard try await apply(listing, in: tx) else {
                    tx.logger.debug("older listing version ignored", metadata: ["listing.id": "\(listing.listingId)", "listing.version": "\(listing.version)"])
                    return
                }
            }
        }
    }

    /// Stores the listing unless a newer (or the same) version is already here; answers whether it did.
    @discardableResult
    static func apply(_ listing: ListingV1, in tx: Transaction) async throws -> Bool {
        let currency = try Currency(code: listing.currency)
        return try await tx.first("""
            INSERT INTO listing_snapshots (id, vendor_id, title, status, orderable, price_amount, currency, quantity_available, version, changed_at)
            VALUES (\(listing.listingId), \(listing.vendorId), \(listing.title), \(listing.status), \(listing.published && listing.hiddenReason == nil),
                    \(listing.priceAmount), \(currency.code), \(max(0, listing.quantityAvailable)), \(listing.version), \(listing.changedAt))
            ON CONFLICT (id) DO UPDATE SET vendor_id = EXCLUDED.vendor_id, title = EXCLUDED.title, status = EXCLUDED.status,
                orderable = EXCLUDED.orderable, price_amount = EXCLUDED.price_amount, currency = EXCLUDED.currency,
                quantity_available = EXCLUDED.quantity_available, version = EXCLUDED.version, changed_at = EXCLUDED.changed_at
            WHERE listing_snapshots.version < EXCLUDED.version
            RETURNING true
            """, as: Bool.self) == true
    }

    static func snapshot(_ id: UUID, in tx: Transaction) async throws -> ListingSnapshot? {
        let rows = try await tx.query("""
            SELECT id, vendor_id, title, status, orderable, price_amount, currency, quantity_available, version
            FROM listing_snapshots WHERE id = \(id)
            """)
        for try await (id, vendor, title, status, orderable, price, currency, available, version)
            in rows.decode((UUID, UUID, String, String, Bool, Int64, String, Int32, Int32).self) {
            return ListingSnapshot(id: id, vendorId: vendor, title: title, status: status, orderable: orderable,
                                   price: try Money(amount: price, currencyCode: currency), quantityAvailable: Int(available), version: Int(version))
        }
        return nil
    }
}
