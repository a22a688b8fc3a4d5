import Contracts
import Foundation
import Logging
import PostgresNIO

/// The small copy of identity's users that every other service keeps in its own `users` table,
/// fed by identity's events. Each service's migration creates the table:
/// `users(id uuid primary key, display_name text, roles text[], status text, updated_at timestamptz)`.
///
/// Newer facts win: an event older than the row it would change is ignored, so late or replayed
/// events never undo a newer one.
public enum UsersProjection {
    public static func register(into handlers: inout EventHandlers) {
        handlers.on(EventTypes.userRegistered) { event, connection, logger in
            let payload = try event.decode(UserRegisteredV1.self)
            try await connection.query("""
                INSERT INTO users (id, display_name, roles, status, updated_at)
                VALUES (\(payload.userId), \(payload.displayName), \(payload.roles), \(payload.status), \(event.time))
                ON CONFLICT (id) DO UPDATE SET
                    display_name = EXCLUDED.display_name, roles = EXCLUDED.roles,
                    status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
                WHERE users.updated_at <= EXCLUDED.updated_at
                """, logger: logger)
        }
        handlers.on(EventTypes.userRoleChanged) { event, connection, logger in
            let payload = try event.decode(UserRoleChangedV1.self)
            try await connection.query("""
                UPDATE users SET roles = \(payload.roles), updated_at = \(event.time)
                WHERE id = \(payload.userId) AND updated_at <= \(event.time)
                """, logger: logger)
        }
        for type in [EventTypes.userSuspended, EventTypes.userReinstated] {
            handlers.on(type) { event, connection, logger in
                let payload = try event.decode(UserStatusChangedV1.self)
                try await connection.query("""
                    UPDATE users SET status = \(payload.status), updated_at = \(event.time)
                    WHERE id = \(payload.userId) AND updated_at <= \(event.time)
                    """, logger: logger)
            }
        }
    }
}
