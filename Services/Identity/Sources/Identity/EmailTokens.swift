import Foundation
import Logging
import Platform
import PostgresNIO

/// Single-use tokens sent by email: 256 random bits to the user, only their SHA-256 stored.
enum EmailTokens {
    enum Purpose: String, Sendable {
        case verifyEmail = "verify-email"
        case passwordReset = "password-reset"

        var lifetime: TimeInterval {
            switch self {
            case .verifyEmail: 24 * 3600
            case .passwordReset: 30 * 60
            }
        }
    }

    /// A new token for `user`; any earlier unused token of the same purpose stops working.
    static func issue(_ purpose: Purpose, user: UUID, email: String, in transaction: Transaction) async throws -> (token: String, expiresAt: Date) {
        try await transaction.query("""
            UPDATE email_tokens SET used_at = now() WHERE user_id = \(user) AND purpose = \(purpose.rawValue) AND used_at IS NULL
            """)
        let token = RefreshTokens.make()
        let expires = Date().addingTimeInterval(purpose.lifetime)
        try await transaction.query("""
            INSERT INTO email_tokens (token_hash, user_id, purpose, email, expires_at)
            VALUES (\(RefreshTokens.hash(token)), \(user), \(purpose.rawValue), \(email), \(expires))
            """)
        return (token, expires)
    }

    /// Uses up a live token and returns whose it is and the address it was sent to; nil when the
    /// token is unknown, used, expired or of another purpose.
    static func consume(_ purpose: Purpose, token: String, in transaction: Transaction) async throws -> (user: UUID, email: String)? {
        let rows = try await transaction.query("""
            UPDATE email_tokens SET used_at = now()
            WHERE token_hash = \(RefreshTokens.hash(token)) AND purpose = \(purpose.rawValue) AND used_at IS NULL AND expires_at > now()
            RETURNING user_id, email
            """)
        for try await (user, email) in rows.decode((UUID, String).self) { return (user, email) }
        return nil
    }

    /// Whether a token could be consumed now (without consuming it).
    static func isLive(_ purpose: Purpose, token: String, client: PostgresClient, context: OperationContext) async throws -> Bool {
        let rows = try await client.query("""
            SELECT 1 FROM email_tokens
            WHERE token_hash = \(RefreshTokens.hash(token)) AND purpose = \(purpose.rawValue) AND used_at IS NULL AND expires_at > now()
            """, logger: context.logger)
        for try await _ in rows.decode(Int.self) { return true }
        return false
    }
}
