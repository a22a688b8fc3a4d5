import Contracts
import Foundation
import Logging
import PostgresNIO

/// A service's part in identity's privacy processes. On `user.export_requested` it answers with
/// what it holds about the user; on `user.erasure_requested` it anonymises that and acknowledges.
/// Both answers go through the outbox to `<service>.privacy.v1` in the same transaction as the
/// inbox row, so a redelivered request is answered once.
public struct PrivacyParticipant: Sendable {
    /// The service's data about a user as one JSON object (text), built by Postgres. Lists must be bounded.
    public typealias Export = @Sendable (UUID, PostgresConnection, Logger) async throws -> String
    /// Anonymises the service's data about a user (keeping what it must, redacted).
    public typealias Erase = @Sendable (UUID, PostgresConnection, Logger) async throws -> Void

    public static func register(service: String, export: @escaping Export, erase: @escaping Erase, into handlers: inout EventHandlers) {
        let source = "/marketplace/\(service)"
        handlers.on(EventTypes.userExportRequested) { event, connection, logger in
            let request = try event.decode(UserExportRequestedV1.self)
            let data = try await export(request.userId, connection, logger)
            let part = UserExportPartV1(exportId: request.exportId, userId: request.userId, service: service, data: data)
            try await answer(EventTypes.userExportPart(service), payload: part, user: request.userId, service: service, source: source,
                             traceparent: event.traceparent, on: connection, logger: logger)
            logger.info("export part sent", metadata: ["user.id": "\(request.userId)", "export.id": "\(request.exportId)"])
        }
        handlers.on(EventTypes.userErasureRequested) { event, connection, logger in
            let request = try event.decode(UserErasureV1.self)
            try await erase(request.userId, connection, logger)
            let done = UserErasureCompletedV1(userId: request.userId, service: service, completedAt: Date())
            try await answer(EventTypes.userErasureCompleted(service), payload: done, user: request.userId, service: service, source: source,
                             traceparent: event.traceparent, on: connection, logger: logger)
            logger.info("user data anonymised", metadata: ["user.id": "\(request.userId)"])
        }
    }

    static func answer<Payload: Encodable>(_ type: String, payload: Payload, user: UUID, service: String, source: String, traceparent: String?,
                                           on connection: PostgresConnection, logger: Logger) async throws {
        let key = user.uuidString.lowercased()
        let event = try CloudEvent.json(type: type, source: source, subject: "users/\(key)", payload: payload, traceparent: traceparent)
        try await Outbox.enqueue(event, topic: Topics.privacy(service), key: key, on: connection, logger: logger)
    }
}

extension UsersProjection {
    /// The projection's row as JSON text (`null` when the service never heard of the user).
    public static func exportJSON(_ user: UUID, on connection: PostgresConnection, logger: Logger) async throws -> String {
        let rows = try await connection.query("""
            SELECT coalesce((SELECT json_build_object('id', u.id, 'displayName', u.display_name, 'roles', u.roles,
                                                      'status', u.status, 'updatedAt', u.updated_at)
                             FROM users u WHERE u.id = \(user))::text, 'null')
            """, logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return "null"
    }

    /// Replaces the projected name of an erased user; the id stays so records keep their links.
    public static func erase(_ user: UUID, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            UPDATE users SET display_name = 'Deleted user', status = 'erased', updated_at = greatest(updated_at, now())
            WHERE id = \(user)
            """, logger: logger)
    }

    /// A participant whose only personal data is the users projection.
    public static func participate(as service: String, into handlers: inout EventHandlers) {
        PrivacyParticipant.register(
            service: service,
            export: { user, connection, logger in "{\"profile\":\(try await exportJSON(user, on: connection, logger: logger))}" },
            erase: { user, connection, logger in try await erase(user, on: connection, logger: logger) },
            into: &handlers)
    }
}
