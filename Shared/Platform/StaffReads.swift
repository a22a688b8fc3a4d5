import Foundation

/// Every time staff read someone's records (an admin a vendor's invoices, a moderator an order),
/// a row says who read what, when and under which request. The table is the service's own
/// (`staff_reads`: `actor_id`, `subject`, `subject_id`, `request_id`, `at`; append-only by a
/// trigger), written in the transaction of the read. A service whose staff must say why they
/// read (messaging's moderation desk) adds a `reason text` column and passes `reason`.
public enum StaffReads {
    public static func record(_ caller: Principal, read subject: String, id: UUID?, reason: String? = nil, in tx: Transaction) async throws {
        if let reason {
            try await tx.query("""
                INSERT INTO staff_reads (actor_id, subject, subject_id, request_id, at, reason)
                VALUES (\(caller.userId), \(subject), \(id), \(tx.context.requestId), now(), \(reason))
                """)
        } else {
            try await tx.query("""
                INSERT INTO staff_reads (actor_id, subject, subject_id, request_id, at)
                VALUES (\(caller.userId), \(subject), \(id), \(tx.context.requestId), now())
                """)
        }
    }
}
