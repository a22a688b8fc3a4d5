import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// A sign-in as its owner sees it in `GET /v1/sessions`.
public struct SessionView: Codable, Sendable, Equatable {
    public var id: UUID
    public var userAgent: String?
    public var createdAt: Date
    public var lastUsedAt: Date
    public var expiresAt: Date
    /// True for the session the calling access token was issued in.
    public var current: Bool
}

/// Sessions (refresh-token families) of a user: listing and revoking them.
struct SessionStore: Sendable {
    /// The most sessions one user can list; older ones beyond it still work and can be revoked.
    static let listLimit = 100

    let client: PostgresClient

    func live(of user: UUID, current: UUID?, context: OperationContext) async throws -> [SessionView] {
        let rows = try await client.query("""
            SELECT id, user_agent, created_at, last_used_at, expires_at FROM sessions
            WHERE user_id = \(user) AND revoked_at IS NULL AND expires_at > now()
            ORDER BY last_used_at DESC, id DESC LIMIT \(Self.listLimit)
            """, logger: context.logger)
        var sessions: [SessionView] = []
        for try await (id, agent, created, lastUsed, expires) in rows.decode((UUID, String?, Date, Date, Date).self) {
            sessions.append(SessionView(id: id, userAgent: agent, createdAt: created, lastUsedAt: lastUsed, expiresAt: expires, current: id == current))
        }
        return sessions
    }

    /// Revokes one of the caller's sessions; another user's session is "not found", not "forbidden",
    /// so ids cannot be probed.
    func revoke(_ session: UUID, of user: UUID, context: OperationContext) async throws {
        try await Database.transaction(client, context) { transaction in
            let found = try await transaction.first(
                "SELECT 1 FROM sessions WHERE id = \(session) AND user_id = \(user) AND revoked_at IS NULL AND expires_at > now() FOR UPDATE",
                as: Int.self)
            guard found != nil else { throw IdentityError.sessionNotFound }
            try await Self.revoke(session: session, reason: "revoked-by-user", in: transaction)
        }
    }

    /// Ends a session and every refresh token in it, and tells the gateway to refuse the
    /// session's access tokens from now on.
    static func revoke(session: UUID, reason: String, in transaction: Transaction) async throws {
        let now = Date()
        let user = try await transaction.first(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = \(reason) WHERE id = \(session) AND revoked_at IS NULL RETURNING user_id",
            as: UUID.self)
        try await transaction.query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = \(session) AND revoked_at IS NULL")
        guard let user else { return }
        let payload = SessionsRevokedV1(userId: user, sessionIds: [session], notBefore: now, keptSessionId: nil, reason: reason, scope: .sessions)
        try await Outbox.emit(SessionEvents.revoked, payload, in: transaction)
    }

    /// Revokes the user's live sessions (all but `kept`) and tells the gateway to refuse their
    /// access tokens from now on. Returns the revoked session ids.
    @discardableResult
    static func revokeAll(of user: UUID, except kept: UUID?, reason: String, in transaction: Transaction) async throws -> [UUID] {
        // Security time: the gateway compares it with tokens' `iat`, which is wall-clock time.
        let notBefore = Date()
        let rows = try await transaction.query("""
            UPDATE sessions SET revoked_at = now(), revoked_reason = \(reason)
            WHERE user_id = \(user) AND revoked_at IS NULL AND id IS DISTINCT FROM \(kept) AND expires_at > now()
            RETURNING id
            """)
        var revoked: [UUID] = []
        for try await id in rows.decode(UUID.self) { revoked.append(id) }
        try await transaction.query("""
            UPDATE refresh_tokens SET revoked_at = now()
            WHERE user_id = \(user) AND revoked_at IS NULL AND family_id IS DISTINCT FROM \(kept)
            """)
        let payload = SessionsRevokedV1(userId: user, sessionIds: revoked, notBefore: notBefore, keptSessionId: kept, reason: reason)
        try await Outbox.emit(SessionEvents.revoked, payload, in: transaction)
        transaction.logger.info("sessions revoked", metadata: ["security.event": "sessions_revoked", "user.id": "\(user)", "reason": "\(reason)",
                                                               "sessions": "\(revoked.count)"])
        return revoked
    }
}
