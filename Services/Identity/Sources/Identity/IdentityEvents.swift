import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// Identity's events, written to the outbox inside the caller's transaction.
enum IdentityEvents {
    static func enqueue<Payload: Encodable>(_ type: String, topic: String, user: UUID, payload: Payload, time: Date = Date(),
                                            traceparent: String?, on connection: PostgresConnection, logger: Logger) async throws {
        let key = user.uuidString.lowercased()
        let event = try CloudEvent.json(type: type, source: EventSources.identity, subject: "users/\(key)",
                                        payload: payload, traceparent: traceparent, time: time)
        try await Outbox.enqueue(event, topic: topic, key: key, on: connection, logger: logger)
    }

    /// Asks messaging to send `template` to the user's address.
    static func notify(user: UUID, to email: String, template: String, data: [String: String], traceparent: String?,
                       on connection: PostgresConnection, logger: Logger) async throws {
        let payload = NotificationRequestedV1(notificationId: UUID.v7(), userId: user, to: email, template: template, data: data)
        try await enqueue(EventTypes.notificationRequested, topic: Topics.identityNotifications, user: user, payload: payload,
                          traceparent: traceparent, on: connection, logger: logger)
    }

    /// Revokes the user's live sessions (all but `kept`) and tells the gateway to refuse their
    /// access tokens from now on. Returns the revoked session ids.
    @discardableResult
    static func revokeSessions(of user: UUID, except kept: UUID?, reason: String, traceparent: String?,
                               on connection: PostgresConnection, logger: Logger) async throws -> [UUID] {
        let notBefore = Date()
        let rows = try await connection.query("""
            UPDATE sessions SET revoked_at = now(), revoked_reason = \(reason)
            WHERE user_id = \(user) AND revoked_at IS NULL AND id IS DISTINCT FROM \(kept) AND expires_at > now()
            RETURNING id
            """, logger: logger)
        var revoked: [UUID] = []
        for try await id in rows.decode(UUID.self) { revoked.append(id) }
        try await connection.query("""
            UPDATE refresh_tokens SET revoked_at = now()
            WHERE user_id = \(user) AND revoked_at IS NULL AND family_id IS DISTINCT FROM \(kept)
            """, logger: logger)
        let payload = SessionsRevokedV1(userId: user, sessionIds: revoked, notBefore: notBefore, keptSessionId: kept, reason: reason)
        try await enqueue(EventTypes.sessionsRevoked, topic: Topics.identitySessions, user: user, payload: payload, time: notBefore,
                          traceparent: traceparent, on: connection, logger: logger)
        logger.info("sessions revoked", metadata: ["security.event": "sessions_revoked", "user.id": "\(user)", "reason": "\(reason)", "sessions": "\(revoked.count)"])
        return revoked
    }
}
