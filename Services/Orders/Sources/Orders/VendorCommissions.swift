import Contracts
import Foundation
import Platform
import PostgresNIO

/// The commission projection: billing states each vendor's plan rate in every `entitlement.changed`,
/// versioned per vendor, so the newest version wins whatever the order of delivery.
enum VendorCommissions {
    static func register(into handlers: inout EventHandlers) {
        handlers.on(BillingEvents.entitlementChanged) { entitlement, _, tx in
            guard try await apply(entitlement, in: tx) else {
                tx.logger.debug("older entitlement ignored", metadata: ["vendor.id": "\(entitlement.vendorId)", "entitlement.version": "\(entitlement.version)"])
                return
            }
        }
    }

    @discardableResult
    static func apply(_ entitlement: EntitlementChangedV1, in tx: Transaction) async throws -> Bool {
        try await tx.first("""
            INSERT INTO vendor_commissions (vendor_id, commission_bps, version, updated_at)
            VALUES (\(entitlement.vendorId), \(min(max(entitlement.commissionBps, 0), 10_000)), \(entitlement.version), \(entitlement.effectiveAt))
            ON CONFLICT (vendor_id) DO UPDATE SET commission_bps = EXCLUDED.commission_bps, version = EXCLUDED.version,
                updated_at = EXCLUDED.updated_at
            WHERE vendor_commissions.version < EXCLUDED.version
            RETURNING true
            """, as: Bool.self) == true
    }

    /// The vendor's rate, or nil when billing has not said (no subscription yet: nothing to sell).
    static func rate(of vendor: UUID, in tx: Transaction) async throws -> Int? {
        try await tx.first("SELECT commission_bps FROM vendor_commissions WHERE vendor_id = \(vendor)", as: Int32.self).map(Int.init)
    }
}
