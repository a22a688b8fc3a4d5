import Contracts
import Foundation
import Platform
import PostgresNIO

/// Tells every replica's search read model and answer cache what changed, on commit: Postgres
/// delivers a NOTIFY to every listening connection only if the transaction commits, so a replica
/// never sees a change that was rolled back, and each replica (not just the one that made or
/// consumed the change) hears it.
enum ListingChanges {
    static let channel = "listings_changed"

    static func listing(_ id: UUID, in transaction: Transaction) async throws {
        try await transaction.query("SELECT pg_notify(\(channel), \("listing:" + id.uuidString.lowercased()))")
    }

    /// Everything of one vendor (its name, rating or standing changed).
    static func vendor(_ id: UUID, in transaction: Transaction) async throws {
        try await transaction.query("SELECT pg_notify(\(channel), \("vendor:" + id.uuidString.lowercased()))")
    }
}

/// Which of a vendor's published listings buyers may see, from its standing: the account's
/// status (users projection), the subscription's entitlement, and the quota.
struct Visibility: Sendable {
    let repository: ListingRepository

    /// Recomputes `hidden_reason` for every published listing of the vendor in one statement and
    /// emits `listing.withdrawn` for each newly hidden one and `listing.published` for each that
    /// came back. Suspension outranks the subscription, which outranks the quota; within the
    /// quota the oldest publications stay and the most recently published excess is hidden.
    func refresh(vendor: UUID, in transaction: Transaction) async throws {
        // One refresh per vendor at a time, each reading after the previous committed: an approval
        // and a lowered quota committing side by side would otherwise each miss the other's write
        // and neither would hide the excess.
        let key = Database.advisoryLockKey("listings.visibility." + vendor.uuidString.lowercased())
        try await transaction.query("SELECT pg_advisory_xact_lock(\(key))")
        let rows = try await transaction.query("""
            WITH standing AS (
                SELECT (SELECT status FROM users WHERE id = \(vendor)) AS user_status,
                       e.may_list, e.listing_quota
                FROM (SELECT 1) one LEFT JOIN entitlements e ON e.vendor_id = \(vendor)
            ), ranked AS (
                SELECT l.id, row_number() OVER (ORDER BY l.published_at, l.id) AS n
                FROM listings l WHERE l.vendor_id = \(vendor) AND l.status = 'published'
            ), wanted AS (
                SELECT r.id, CASE
                    WHEN s.user_status = 'suspended' THEN 'vendor_suspended'
                    WHEN NOT coalesce(s.may_list, false) THEN 'subscription_inactive'
                    WHEN r.n > s.listing_quota THEN 'over_quota'
                END AS reason
                FROM ranked r CROSS JOIN standing s
            )
            UPDATE listings l SET hidden_reason = w.reason, updated_at = \(transaction.now)
            FROM wanted w WHERE l.id = w.id AND l.hidden_reason IS DISTINCT FROM w.reason
            RETURNING l.id
            """)
        var changed: [UUID] = []
        for try await id in rows.decode(UUID.self) { changed.append(id) }
        guard !changed.isEmpty else { return }
        for id in changed {
            let record = try await repository.reload(id, in: transaction)
            let contract = record.isHidden ? ListingEvents.withdrawn : ListingEvents.published
            try await Outbox.emit(contract, record.snapshot(at: transaction.now), in: transaction)
        }
        try await ListingChanges.vendor(vendor, in: transaction)
        transaction.logger.info("listing visibility changed", metadata: ["vendor.id": "\(vendor)", "listings": "\(changed.count)"])
    }

    /// The reason a listing being published now would be hidden (the quota is checked before publishing).
    func hiddenReason(vendor: UUID, in transaction: Transaction) async throws -> String? {
        let standing = try await transaction.query("""
            SELECT (SELECT status FROM users WHERE id = \(vendor)), (SELECT may_list FROM entitlements WHERE vendor_id = \(vendor))
            """)
        for try await (status, mayList) in standing.decode((String?, Bool?).self) {
            if status == "suspended" { return HiddenReason.vendorSuspended.rawValue }
            if mayList != true { return HiddenReason.subscriptionInactive.rawValue }
        }
        return nil
    }
}

/// The vendor's entitlement as listings keeps it (billing's `entitlement.changed`, newest version).
struct Entitlement: Sendable, Equatable {
    var mayPublish: Bool
    var mayList: Bool
    var listingQuota: Int

    /// The vendor's entitlement, its row locked so two publishes of one vendor cannot both take the last slot.
    static func lock(vendor: UUID, in transaction: Transaction) async throws -> Entitlement? {
        let rows = try await transaction.query("""
            SELECT may_publish, may_list, listing_quota FROM entitlements WHERE vendor_id = \(vendor) FOR UPDATE
            """)
        for try await (publish, list, quota) in rows.decode((Bool, Bool, Int).self) {
            return Entitlement(mayPublish: publish, mayList: list, listingQuota: quota)
        }
        return nil
    }

    /// Applies an event unless a newer version is already here; true when it was applied.
    static func apply(_ event: EntitlementChangedV1, in transaction: Transaction) async throws -> Bool {
        let applied = try await transaction.first("""
            INSERT INTO entitlements (vendor_id, may_publish, may_list, listing_quota, commission_bps, subscription_status,
                                      reason, effective_at, version, updated_at)
            VALUES (\(event.vendorId), \(event.mayPublish), \(event.mayList), \(event.listingQuota), \(event.commissionBps),
                    \(event.subscriptionStatus), \(event.reason), \(event.effectiveAt), \(event.version), now())
            ON CONFLICT (vendor_id) DO UPDATE SET
                may_publish = EXCLUDED.may_publish, may_list = EXCLUDED.may_list, listing_quota = EXCLUDED.listing_quota,
                commission_bps = EXCLUDED.commission_bps, subscription_status = EXCLUDED.subscription_status,
                reason = EXCLUDED.reason, effective_at = EXCLUDED.effective_at, version = EXCLUDED.version, updated_at = now()
            WHERE entitlements.version < EXCLUDED.version
            RETURNING version
            """, as: Int64.self)
        return applied != nil
    }
}
