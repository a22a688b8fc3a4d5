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

    enum CodingKeys: String, CodingKey { case id, at, actorId, action, targetId, reason, details, requestId }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(at, forKey: .at)
        try container.encode(actorId, forKey: .actorId)
        try container.encode(action, forKey: .action)
        try container.encode(targetId, forKey: .targetId)
        try container.encode(reason, forKey: .reason)
        try container.encode(details, forKey: .details)
        try container.encode(requestId, forKey: .requestId)
    }
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

    static func record(_ action: Action, actor: UUID?, target: UUID?, reason: String? = nil, details: [String: String] = [:],
                       requestId: String? = nil, on connection: PostgresConnection, logger: Logger) async throws {
        let json = String(decoding: try JSONEncoder().encode(details), as: UTF8.self)
        try await connection.query("""
            INSERT INTO audit_log (id, actor_id, action, target_id, reason, details, request_id)
            VALUES (\(UUID.v7()), \(actor), \(action.rawValue), \(target), \(reason), \(json)::jsonb, \(requestId))
            """, logger: logger)
    }

    static func record(_ action: Action, actor: UUID?, target: UUID?, reason: String? = nil, details: [String: String] = [:],
                       requestId: String? = nil, client: PostgresClient, logger: Logger) async throws {
        try await client.withConnection { connection in
            try await record(action, actor: actor, target: target, reason: reason, details: details, requestId: requestId, on: connection, logger: logger)
        }
    }

    struct Filter: Sendable {
        var actorId: UUID?
        var targetId: UUID?
        var action: String?
    }

    /// Newest first, one keyset page. Each filter has its own index; several combine as conditions.
    static func page(_ filter: Filter, _ page: PageRequest, client: PostgresClient, logger: Logger) async throws -> Page<AuditEntry> {
        let after = page.after
        let rows = try await client.query("""
            SELECT id, at, actor_id, action, target_id, reason, details::text, request_id FROM audit_log
            WHERE (\(filter.actorId)::uuid IS NULL OR actor_id = \(filter.actorId))
              AND (\(filter.targetId)::uuid IS NULL OR target_id = \(filter.targetId))
              AND (\(filter.action)::text IS NULL OR action = \(filter.action))
              AND (\(after?.time)::timestamptz IS NULL OR (at, id) < (\(after?.time), \(after?.id)))
            ORDER BY at DESC, id DESC LIMIT \(page.fetchLimit)
            """, logger: logger)
        var entries: [AuditEntry] = []
        for try await (id, at, actor, action, target, reason, details, requestId) in rows.decode((UUID, Date, UUID?, String, UUID?, String?, String, String?).self) {
            let decoded = (try? JSONDecoder().decode([String: String].self, from: Data(details.utf8))) ?? [:]
            entries.append(AuditEntry(id: id, at: at, actorId: actor, action: action, targetId: target, reason: reason, details: decoded, requestId: requestId))
        }
        return page.page(entries) { Cursor(time: $0.at, id: $0.id) }
    }
}
