import Foundation
import Platform
import PostgresNIO

/// A dispute as orders stores it (its evidence is read separately).
struct DisputeRecord: Sendable, Equatable {
    struct Resolution: Sendable, Equatable {
        var outcome: DisputeOutcome
        var refundAmount: Int64
        var note: String
        /// Null when the buyer's bank decided (a chargeback lost).
        var resolvedBy: UUID?
    }

    struct Chargeback: Sendable, Equatable {
        var id: String
        var amount: Int64
        var reason: String
        var status: String
    }

    var id: UUID
    var orderId: UUID
    var buyerId: UUID
    var vendorId: UUID
    var status: DisputeStatus
    var reason: DisputeReason
    var description: String
    var currency: Currency
    var resolution: Resolution?
    var chargeback: Chargeback?
    var version: Int
    var openedAt: Date
    var escalatedAt: Date?
    var closedAt: Date?
    var updatedAt: Date
}

/// One piece of evidence: what a party (or the desk) wrote, with links to photos or documents.
struct EvidenceView: Sendable, Codable, Equatable {
    var id: UUID
    var authorId: UUID
    /// `buyer`, `vendor`, `moderator` or `admin`.
    var authorRole: String
    var text: String
    var attachments: [String]
    var createdAt: Date
}

/// The dispute as the API shows it (`evidence` on single reads only; the queue leaves it empty).
struct DisputeView: Sendable, Codable, Equatable {
    struct Resolution: Sendable, Codable, Equatable {
        var outcome: String
        var refundAmount: Money
        var note: String
        var resolvedBy: UUID?
        var resolvedAt: Date
    }

    struct Chargeback: Sendable, Codable, Equatable {
        var id: String
        var amount: Money
        var reason: String
        var status: String
    }

    var id: UUID
    var orderId: UUID
    var status: String
    var reason: String
    var description: String
    var buyerId: UUID
    var vendorId: UUID
    var resolution: Resolution?
    var chargeback: Chargeback?
    var evidence: [EvidenceView]
    var version: Int
    var openedAt: Date
    /// When it will be escalated to the admins if still open (null once it is not).
    var escalatesAt: Date?
    var escalatedAt: Date?
    var closedAt: Date?
    var updatedAt: Date

    init(_ d: DisputeRecord, evidence: [EvidenceView]) {
        id = d.id
        orderId = d.orderId
        status = d.status.rawValue
        reason = d.reason.rawValue
        description = d.description
        buyerId = d.buyerId
        vendorId = d.vendorId
        resolution = d.resolution.map {
            Resolution(outcome: $0.outcome.rawValue, refundAmount: Money(amount: $0.refundAmount, currency: d.currency), note: $0.note,
                       resolvedBy: $0.resolvedBy, resolvedAt: d.closedAt ?? d.updatedAt)
        }
        chargeback = d.chargeback.map { Chargeback(id: $0.id, amount: Money(amount: $0.amount, currency: d.currency), reason: $0.reason, status: $0.status) }
        self.evidence = evidence
        version = d.version
        openedAt = d.openedAt
        escalatesAt = d.status == .open ? d.openedAt.addingTimeInterval(DisputeWorkflow.escalationDelay) : nil
        escalatedAt = d.escalatedAt
        closedAt = d.closedAt
        updatedAt = d.updatedAt
    }
}

/// Disputes' rows: one statement per read or write; every change locks the order first, then
/// the dispute (the order every path takes).
struct DisputeRepository: Sendable {
    static let columns = """
        id, order_id, buyer_id, vendor_id, status, reason, description, currency, outcome, refund_amount, resolution_note, resolved_by,
        chargeback_id, chargeback_amount, chargeback_reason, chargeback_status, version, opened_at, escalated_at, closed_at, updated_at
        """
    /// The most evidence one dispute takes (each piece is bounded too): a dispute is read whole.
    static let maximumEvidence = 100

    /// The desk's queue: oldest first; a cursor of one status's queue is refused by another's.
    static let oldestFirst = KeysetOrder([.init("opened_at", .time)], idColumn: "id")
    static func binding(_ status: DisputeStatus) -> String {
        KeysetCursor.binding("moderation.disputes", sort: "oldest", filters: [("status", status.rawValue)])
    }

    func insert(_ d: DisputeRecord, in tx: Transaction) async throws {
        try await tx.query("""
            INSERT INTO disputes (id, order_id, buyer_id, vendor_id, status, reason, description, currency, version, opened_at, updated_at)
            VALUES (\(d.id), \(d.orderId), \(d.buyerId), \(d.vendorId), \(d.status.rawValue), \(d.reason.rawValue), \(d.description),
                    \(d.currency.code), \(d.version), \(d.openedAt), \(d.updatedAt))
            """)
    }

    func load(_ id: UUID, lock: Bool = false, in tx: Transaction) async throws -> DisputeRecord? {
        try await Self.decode(tx.query("SELECT \(unescaped: Self.columns) FROM disputes WHERE id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")")).first
    }

    /// The order's live dispute (open or escalated), locked.
    func live(of orderId: UUID, in tx: Transaction) async throws -> DisputeRecord? {
        try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM disputes WHERE order_id = \(orderId) AND status IN ('open', 'escalated') FOR UPDATE
            """)).first
    }

    /// The dispute a chargeback joined, locked.
    func joined(chargeback id: String, of orderId: UUID, in tx: Transaction) async throws -> DisputeRecord? {
        try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM disputes WHERE order_id = \(orderId) AND chargeback_id = \(id) FOR UPDATE
            """)).first
    }

    /// Writes the dispute's mutable columns with its next version.
    func update(_ d: DisputeRecord, in tx: Transaction) async throws -> DisputeRecord {
        var updated = d
        updated.version = d.version + 1
        updated.updatedAt = tx.now
        try await tx.query("""
            UPDATE disputes SET status = \(d.status.rawValue), outcome = \(d.resolution?.outcome.rawValue), refund_amount = \(d.resolution?.refundAmount),
                resolution_note = \(d.resolution?.note), resolved_by = \(d.resolution?.resolvedBy), chargeback_id = \(d.chargeback?.id),
                chargeback_amount = \(d.chargeback?.amount), chargeback_reason = \(d.chargeback?.reason), chargeback_status = \(d.chargeback?.status),
                version = \(updated.version), escalated_at = \(d.escalatedAt), closed_at = \(d.closedAt), updated_at = \(updated.updatedAt)
            WHERE id = \(d.id)
            """)
        return updated
    }

    func addEvidence(_ e: EvidenceView, to dispute: UUID, in tx: Transaction) async throws {
        try await tx.query("""
            INSERT INTO dispute_evidence (id, dispute_id, author_id, author_role, body, attachments, created_at)
            VALUES (\(e.id), \(dispute), \(e.authorId), \(e.authorRole), \(e.text), \(e.attachments), \(e.createdAt))
            """)
    }

    /// The dispute's evidence, oldest first (bounded by `maximumEvidence`).
    func evidence(of dispute: UUID, in tx: Transaction) async throws -> [EvidenceView] {
        let rows = try await tx.query("""
            SELECT id, author_id, author_role, body, attachments, created_at FROM dispute_evidence
            WHERE dispute_id = \(dispute) ORDER BY created_at, id LIMIT \(Self.maximumEvidence)
            """)
        var items: [EvidenceView] = []
        for try await (id, author, role, body, attachments, created) in rows.decode((UUID, UUID, String, String, [String], Date).self) {
            items.append(EvidenceView(id: id, authorId: author, authorRole: role, text: body, attachments: attachments, createdAt: created))
        }
        return items
    }

    func evidenceCount(of dispute: UUID, in tx: Transaction) async throws -> Int {
        Int(try await tx.first("SELECT count(*) FROM dispute_evidence WHERE dispute_id = \(dispute)", as: Int64.self) ?? 0)
    }

    func page(_ status: DisputeStatus, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<DisputeView> {
        let items = try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM disputes WHERE status = \(status.rawValue) AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)).map { DisputeView($0, evidence: []) }
        return page.page(items) { KeysetCursor(values: [.time($0.openedAt)], id: $0.id) }
    }

    static func decode(_ rows: PostgresRowSequence) async throws -> [DisputeRecord] {
        var result: [DisputeRecord] = []
        for try await row in rows {
            let c = row.makeRandomAccess()
            let statusText = try c[4].decode(String.self), reasonText = try c[5].decode(String.self)
            guard let status = DisputeStatus(rawValue: statusText) else { throw OrdersStoreError.unknownStatus(statusText) }
            guard let reason = DisputeReason(rawValue: reasonText) else { throw OrdersStoreError.unknownStatus(reasonText) }
            let outcome = try c[8].decode(String?.self).flatMap(DisputeOutcome.init(rawValue:))
            let chargebackId = try c[12].decode(String?.self)
            result.append(DisputeRecord(
                id: try c[0].decode(UUID.self), orderId: try c[1].decode(UUID.self), buyerId: try c[2].decode(UUID.self),
                vendorId: try c[3].decode(UUID.self), status: status, reason: reason, description: try c[6].decode(String.self),
                currency: try Currency(code: try c[7].decode(String.self)),
                resolution: try outcome.map { DisputeRecord.Resolution(outcome: $0, refundAmount: try c[9].decode(Int64?.self) ?? 0,
                                                                        note: try c[10].decode(String?.self) ?? "", resolvedBy: try c[11].decode(UUID?.self)) },
                chargeback: try chargebackId.map { DisputeRecord.Chargeback(id: $0, amount: try c[13].decode(Int64?.self) ?? 0,
                                                                             reason: try c[14].decode(String?.self) ?? "",
                                                                             status: try c[15].decode(String?.self) ?? "open") },
                version: Int(try c[16].decode(Int32.self)), openedAt: try c[17].decode(Date.self), escalatedAt: try c[18].decode(Date?.self),
                closedAt: try c[19].decode(Date?.self), updatedAt: try c[20].decode(Date.self)))
        }
        return result
    }
}
