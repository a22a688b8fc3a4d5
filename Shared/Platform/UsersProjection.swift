import Contracts
import Foundation
import Logging
import PostgresNIO

/// The small copy of identity's users that every other service keeps in its own `users` table,
/// fed by identity's events: id, display name, roles, status. The platform owns both the table
/// (`UsersProjection.migrations`) and the handlers; a service opts in with two lines:
///
///     static func migrations() throws -> [Migration] { try migrations(in: .module) + UsersProjection.migrations }
///     UsersProjection.register(into: &handlers)
///
/// Newer facts win: an event older than the row it would change is ignored, so late or replayed
/// events never undo a newer one.
public enum UsersProjection {
    /// Applied after the service's own files: the four services that predate it created the same
    /// table in their first migration (applied files never change), which this adopts as it is.
    public static let migrations: [Migration] = [
        Migration(id: "users_projection_0001_table", sql: """
            -- The users projection, owned by the platform (Shared/Platform/UsersProjection.swift).
            CREATE TABLE IF NOT EXISTS users (
                id uuid PRIMARY KEY,
                display_name text NOT NULL,
                roles text[] NOT NULL,
                status text NOT NULL,
                updated_at timestamptz NOT NULL
            );
            """),
    ]

    public static func register(into handlers: inout EventHandlers) {
        // Registrations arrive in runs (a burst of sign-ups): one statement per run.
        handlers.onBatch(UserEvents.registered) { events, transaction in
            var newest: [UUID: (payload: UserRegisteredV1, time: Date)] = [:]
            for (payload, event) in events where newest[payload.userId].map({ $0.time <= event.time }) ?? true {
                newest[payload.userId] = (payload, event.time)
            }
            let rows = Array(newest.values)
            try await transaction.query("""
                INSERT INTO users (id, display_name, roles, status, updated_at)
                SELECT id, display_name, string_to_array(roles, ','), status, updated_at
                FROM unnest(\(rows.map(\.payload.userId)), \(rows.map(\.payload.displayName)),
                            \(rows.map { $0.payload.roles.joined(separator: ",") }), \(rows.map(\.payload.status)), \(rows.map(\.time)))
                     AS registered(id, display_name, roles, status, updated_at)
                ON CONFLICT (id) DO UPDATE SET
                    display_name = EXCLUDED.display_name, roles = EXCLUDED.roles,
                    status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
                WHERE users.updated_at <= EXCLUDED.updated_at
                """)
        }
        handlers.on(UserEvents.roleChanged) { payload, event, transaction in
            try await transaction.query("""
                UPDATE users SET roles = \(payload.roles), updated_at = \(event.time)
                WHERE id = \(payload.userId) AND updated_at <= \(event.time)
                """)
        }
        for contract in [UserEvents.suspended, UserEvents.reinstated] {
            handlers.on(contract) { payload, event, transaction in
                try await transaction.query("""
                    UPDATE users SET status = \(payload.status), updated_at = \(event.time)
                    WHERE id = \(payload.userId) AND updated_at <= \(event.time)
                    """)
            }
        }
    }

    /// The projection's row as JSON text (`null` when the service never heard of the user).
    public static func exportJSON(_ user: UUID, in transaction: Transaction) async throws -> String {
        try await transaction.first("""
            SELECT coalesce((SELECT json_build_object('id', u.id, 'displayName', u.display_name, 'roles', u.roles,
                                                      'status', u.status, 'updatedAt', u.updated_at)
                             FROM users u WHERE u.id = \(user))::text, 'null')
            """, as: String.self) ?? "null"
    }

    /// Replaces the projected name of an erased user; the id stays so records keep their links.
    public static func erase(_ user: UUID, in transaction: Transaction) async throws {
        try await transaction.query("""
            UPDATE users SET display_name = 'Deleted user', status = 'erased', updated_at = greatest(updated_at, now())
            WHERE id = \(user)
            """)
    }

    /// A privacy participant whose only personal data is the users projection.
    public static func participate(as service: String, into handlers: inout EventHandlers) {
        PrivacyParticipant.register(
            service: service,
            export: { user, transaction in "{\"profile\":\(try await exportJSON(user, in: transaction))}" },
            erase: { user, transaction in try await erase(user, in: transaction) },
            into: &handlers)
    }
}
