import Foundation
import Logging
import Platform
import PostgresNIO

/// `GET /v1/users/me/export`: what identity holds about the caller, as JSON. Secrets (password
/// hash, TOTP key, token hashes) are described, never exported.
public struct IdentityExport: Codable, Sendable {
    public var service = "identity"
    public var exportedAt: Date
    public var account: UserView
    public var passwordChangedAt: Date?
    public var sessions: [ExportedSession]
    public var auditEntries: [AuditEntry]

    public struct ExportedSession: Codable, Sendable {
        public var id: UUID
        public var userAgent: String?
        public var createdAt: Date
        public var lastUsedAt: Date
        public var revokedAt: Date?
        public var signInMethods: [String]
    }
}

enum Privacy {
    /// The most sessions and audit entries one export lists, newest first (bounded memory).
    static let exportLimit = 500

    static func export(user: UUID, requestId: String?, client: PostgresClient, logger: Logger) async throws -> IdentityExport {
        let accountRows = try await client.query("""
            SELECT \(unescaped: UserView.columns) FROM users u
            LEFT JOIN vendor_profiles v ON v.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id
            WHERE u.id = \(user) AND u.status <> 'erased'
            """, logger: logger)
        var account: UserView?
        for try await row in accountRows { account = try UserView(row) }
        guard let view = account else { throw IdentityError.userNotFound }
        var passwordChanged: Date?
        for try await changed in try await client.query("SELECT updated_at FROM credentials WHERE user_id = \(user)", logger: logger).decode(Date.self) {
            passwordChanged = changed
        }
        let sessionRows = try await client.query("""
            SELECT id, user_agent, created_at, last_used_at, revoked_at, amr FROM sessions WHERE user_id = \(user)
            ORDER BY created_at DESC LIMIT \(exportLimit)
            """, logger: logger)
        var sessions: [IdentityExport.ExportedSession] = []
        for try await (id, agent, created, used, revoked, amr) in sessionRows.decode((UUID, String?, Date, Date, Date?, [String]).self) {
            sessions.append(.init(id: id, userAgent: agent, createdAt: created, lastUsedAt: used, revokedAt: revoked, signInMethods: amr))
        }
        let audit = try await AuditLog.page(.init(actorId: nil, targetId: user, action: nil), try PageRequest(limit: 100), client: client, logger: logger)
        try await AuditLog.record(.exported, actor: user, target: user, requestId: requestId, client: client, logger: logger)
        return IdentityExport(exportedAt: Date(), account: view, passwordChangedAt: passwordChanged, sessions: sessions, auditEntries: audit.items)
    }
}
