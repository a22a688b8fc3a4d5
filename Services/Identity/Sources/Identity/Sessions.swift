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

    enum CodingKeys: String, CodingKey { case id, userAgent, createdAt, lastUsedAt, expiresAt, current }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(userAgent, forKey: .userAgent)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(lastUsedAt, forKey: .lastUsedAt)
        try container.encode(expiresAt, forKey: .expiresAt)
        try container.encode(current, forKey: .current)
    }
}

/// Sessions (refresh-token families) of a user: listing and revoking them.
struct SessionStore: Sendable {
    /// The most sessions one user can list; older ones beyond it still work and can be revoked.
    static let listLimit = 100

    let client: PostgresClient

    func live(of user: UUID, current: UUID?, logger: Logger) async throws -> [SessionView] {
        let rows = try await client.query("""
            SELECT id, user_agent, created_at, last_used_at, expires_at FROM sessions
            WHERE user_id = \(user) AND revoked_at IS NULL AND expires_at > now()
            ORDER BY last_used_at DESC, id DESC LIMIT \(Self.listLimit)
            """, logger: logger)
        var sessions: [SessionView] = []
        for try await (id, agent, created, lastUsed, expires) in rows.decode((UUID, String?, Date, Date, Date).self) {
            sessions.append(SessionView(id: id, userAgent: agent, createdAt: created, lastUsedAt: lastUsed, expiresAt: expires, current: id == current))
        }
        return sessions
    }

    /// Revokes one of the caller's sessions; another user's session is "not found", not "forbidden",
    /// so ids cannot be probed.
    func revoke(_ session: UUID, of user: UUID, logger: Logger) async throws {
        try await Database.transaction(client, logger: logger) { connection in
            let rows = try await connection.query(
                "SELECT 1 FROM sessions WHERE id = \(session) AND user_id = \(user) AND revoked_at IS NULL AND expires_at > now() FOR UPDATE",
                logger: logger)
            var found = false
            for try await _ in rows.decode(Int.self) { found = true }
            guard found else { throw IdentityError.sessionNotFound }
            try await Self.revoke(session: session, reason: "revoked-by-user", on: connection, logger: logger)
        }
    }

    /// Ends a session and every refresh token in it, and tells the gateway to refuse the
    /// session's access tokens from now on.
    static func revoke(session: UUID, reason: String, on connection: PostgresConnection, logger: Logger) async throws {
        let now = Date()
        let rows = try await connection.query(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = \(reason) WHERE id = \(session) AND revoked_at IS NULL RETURNING user_id",
            logger: logger)
        var user: UUID?
        for try await owner in rows.decode(UUID.self) { user = owner }
        try await connection.query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = \(session) AND revoked_at IS NULL", logger: logger)
        guard let user else { return }
        let payload = SessionsRevokedV1(userId: user, sessionIds: [session], notBefore: now, keptSessionId: nil, reason: reason, scope: .sessions)
        try await IdentityEvents.enqueue(EventTypes.sessionsRevoked, topic: Topics.identitySessions, user: user, payload: payload, time: now,
                                         traceparent: nil, on: connection, logger: logger)
    }
}
