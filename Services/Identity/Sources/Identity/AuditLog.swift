import Foundation
import Logging
import Platform
import PostgresNIO

/// One entry of the append-only audit log: who did what to whom, when and why.
public struct AuditEntry: Codable, Sendable, Equatable {
    public var id: UUID
    public var at: Date
    /// The acting user; nil for the system and the command line.
    public var actorId: UUID?
    public var action: String
    public var targetId: UUID?
    public var reason: String?
    public var details: [String: String]
    public var requestId: String?
}

/// Writes and reads `audit_log`. Entries are written in the transaction of the change they record,
/// so a change and its entry exist together or not at all. Never holds passwords, codes or tokens.
enum AuditLog {
    /// The actions written, as documented in the README.
    enum Action: String, CaseIterable {
        case loginSucceeded = "login.succeeded"
        case loginFailed = "login.failed"
        case mfaEnrolled = "mfa.enrolled"
        case mfaFailed = "mfa.failed"
        case recoveryCodeUsed = "mfa.recovery_code_used"
        case emailVerified = "email.verified"
        case passwordChanged = "password.changed"
        case passwordReset = "password.reset"
        case sessionsRevoked = "sessions.revoked"
        case rolesChanged = "user.roles_changed"
        case suspended = "user.suspended"
        case reinstated = "user.reinstated"
        case adminBootstrapped = "admin.bootstrapped"
        case exported = "user.exported"
        case erasureRequested = "user.erasure_requested"
        case erased = "user.erased"
    }

    /// Records `action` in the transaction of the change; the request id comes from its context.
    static func record(_ action: Action, actor: UUID?, target: UUID?, reason: String? = nil, details: [String: String] = [:],
                       in transaction: Transaction) async throws {
        try await transaction.query("""
            INSERT INTO audit_log (id, actor_id, action, target_id, reason, details, request_id)
            VALUES (\(UUID.v7()), \(actor), \(action.rawValue), \(target), \(reason), \(try JSONWriter.string(details))::jsonb,
                    \(transaction.context.requestId))
            """)
    }

    /// Records `action` on its own (a refused attempt: nothing else to commit with it).
    static func record(_ action: Action, actor: UUID?, target: UUID?, reason: String? = nil, details: [String: String] = [:],
                       client: PostgresClient, context: OperationContext) async throws {
        try await Database.transaction(client, context) { transaction in
            try await record(action, actor: actor, target: target, reason: reason, details: details, in: transaction)
        }
    }

    struct Filter: Sendable {
        var actorId: UUID?
        var targetId: UUID?
        var action: String?
    }

    /// Newest first.
    static let newestFirst = KeysetOrder([.init("at", .time, descending: true)], idColumn: "id", idDescending: true)

    /// The binding of a page of this list: a cursor taken under other filters is refused.
    static func binding(_ filter: Filter) -> String {
        KeysetCursor.binding("audit-log", sort: "newest", filters: [("actorId", filter.actorId?.uuidString.lowercased() ?? ""),
                                                                    ("targetId", filter.targetId?.uuidString.lowercased() ?? ""),
                                                                    ("action", filter.action ?? "")])
    }

    /// Newest first, one keyset page. Each filter has its own index; several combine as conditions.
    static func page(_ filter: Filter, _ page: KeysetPageRequest, client: PostgresClient, context: OperationContext) async throws -> Page<AuditEntry> {
        let rows = try await client.query("""
            SELECT id, at, actor_id, action, target_id, reason, details::text, request_id FROM audit_log
            WHERE (\(filter.actorId)::uuid IS NULL OR actor_id = \(filter.actorId))
              AND (\(filter.targetId)::uuid IS NULL OR target_id = \(filter.targetId))
              AND (\(filter.action)::text IS NULL OR action = \(filter.action))
              AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """, logger: context.logger)
        var entries: [AuditEntry] = []
        for try await (id, at, actor, action, target, reason, details, requestId) in rows.decode((UUID, Date, UUID?, String, UUID?, String?, String, String?).self) {
            let decoded = (try? JSONDecoder().decode([String: String].self, from: Data(details.utf8))) ?? [:]
            entries.append(AuditEntry(id: id, at: at, actorId: actor, action: action, targetId: target, reason: reason, details: decoded, requestId: requestId))
        }
        return page.page(entries) { KeysetCursor(values: [.time($0.at)], id: $0.id) }
    }
}
