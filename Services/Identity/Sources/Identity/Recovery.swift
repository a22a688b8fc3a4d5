import Foundation
import Logging
import Platform
import PostgresNIO

/// Email verification, password reset and password change.
extension AccountService {
    /// Writes a verification token and asks messaging to mail it, in the caller's transaction.
    func sendVerification(user: UUID, email: String, displayName: String, in transaction: Transaction) async throws {
        let (token, expires) = try await EmailTokens.issue(.verifyEmail, user: user, email: email, in: transaction)
        try await Notifications.request(user: user, to: email, template: "email-verification",
                                        data: ["token": token, "expiresAt": EventCoding.formatTime(expires), "displayName": displayName],
                                        in: transaction)
    }

    /// `POST /v1/auth/verify-email/resend`: a new link for the caller, if the address is not yet proven.
    func resendVerification(user: UUID, address: String?, context: OperationContext) async throws {
        try await recoveryThrottle.take(account: user.uuidString.lowercased(), address: address, purpose: "verify", context: context)
        try await Database.transaction(client, context) { transaction in
            let rows = try await transaction.query(
                "SELECT email, display_name, email_verified FROM users WHERE id = \(user) AND status = 'active'")
            var found: (String, String, Bool)?
            for try await row in rows.decode((String, String, Bool).self) { found = row }
            guard let (email, name, verified) = found else { throw IdentityError.userNotFound }
            guard !verified else { throw IdentityError.emailAlreadyVerified }
            try await sendVerification(user: user, email: email, displayName: name, in: transaction)
        }
    }

    /// `POST /v1/auth/verify-email`: the token proves the address it was sent to, if that is still
    /// the account's address.
    func verifyEmail(token: String, address: String?, context: OperationContext) async throws {
        try await recoveryThrottle.take(account: nil, address: address, purpose: "verify-confirm", context: context)
        try await Database.transaction(client, context) { transaction in
            guard let (user, email) = try await EmailTokens.consume(.verifyEmail, token: token, in: transaction) else {
                throw IdentityError.invalidEmailToken
            }
            let updated = try await transaction.first("""
                UPDATE users SET email_verified = true, updated_at = now(), version = version + 1
                WHERE id = \(user) AND email = \(email) AND status = 'active' RETURNING 1
                """, as: Int.self)
            guard updated != nil else { throw IdentityError.invalidEmailToken }
            try await Notifications.address(of: user, is: email, verified: true, in: transaction)
            try await AuditLog.record(.emailVerified, actor: user, target: user, in: transaction)
            transaction.logger.info("email verified", metadata: ["user.id": "\(user)"])
        }
    }

    /// `POST /v1/auth/password-reset`: mails a 30-minute link when the address belongs to an active
    /// account. The caller learns nothing either way: the answer is the same.
    func requestPasswordReset(email: String, address: String?, context: OperationContext) async throws {
        let normalized = RegistrationRules.normalize(email: email)
        try await recoveryThrottle.take(account: normalized, address: address, purpose: "reset", context: context)
        // An address holding U+0000 belongs to no account (see login); the answer is the same.
        guard !normalized.contains("\u{0}") else { return }
        try await Database.transaction(client, context) { transaction in
            let rows = try await transaction.query(
                "SELECT id, email, display_name FROM users WHERE email_normalized = \(normalized) AND status = 'active'")
            var found: [(UUID, String, String)] = []
            for try await row in rows.decode((UUID, String, String).self) { found.append(row) }
            for (user, email, name) in found {
                let (token, expires) = try await EmailTokens.issue(.passwordReset, user: user, email: email, in: transaction)
                try await Notifications.request(user: user, to: email, template: "password-reset",
                                                data: ["token": token, "expiresAt": EventCoding.formatTime(expires), "displayName": name],
                                                in: transaction)
                transaction.logger.info("password reset requested", metadata: ["security.event": "password_reset_requested", "user.id": "\(user)"])
            }
        }
    }

    /// `POST /v1/auth/password-reset/confirm`: sets the new password and signs the account out
    /// everywhere. The token also proves the address, so it counts as verified.
    func confirmPasswordReset(token: String, newPassword: String, address: String?, context: OperationContext) async throws {
        try await recoveryThrottle.take(account: nil, address: address, purpose: "reset-confirm", context: context)
        // A dead token is refused before any Argon2 work, so junk tokens cost the caller, not us.
        guard try await EmailTokens.isLive(.passwordReset, token: token, client: client, context: context) else {
            throw IdentityError.invalidEmailToken
        }
        // Hash before the transaction: Argon2 takes tens of milliseconds and must not hold row locks.
        let hash = try await hasher.hash(newPassword)
        try await Database.transaction(client, context) { transaction in
            guard let (user, email) = try await EmailTokens.consume(.passwordReset, token: token, in: transaction) else {
                throw IdentityError.invalidEmailToken
            }
            let rows = try await transaction.query(
                "SELECT email_normalized, display_name FROM users WHERE id = \(user) AND email = \(email) AND status = 'active'")
            var found: (String, String)?
            for try await row in rows.decode((String, String).self) { found = row }
            guard let (normalized, name) = found else { throw IdentityError.invalidEmailToken }
            if let problem = PasswordPolicy.shipped.problem(with: newPassword, email: email, displayName: name) {
                throw Problem.validation([FieldError("newPassword", problem)])
            }
            try await transaction.query("UPDATE credentials SET password_hash = \(hash), updated_at = now() WHERE user_id = \(user)")
            try await transaction.query(
                "UPDATE users SET email_verified = true, updated_at = now(), version = version + 1 WHERE id = \(user)")
            // The reset link reached this address: it is proven.
            try await Notifications.address(of: user, is: email, verified: true, in: transaction)
            try await transaction.query("DELETE FROM login_throttles WHERE key = \(LoginThrottle.accountKey(normalized))")
            try await SessionStore.revokeAll(of: user, except: nil, reason: "password-reset", in: transaction)
            try await Notifications.request(user: user, to: email, template: "password-changed", data: ["displayName": name], in: transaction)
            try await AuditLog.record(.passwordReset, actor: user, target: user, in: transaction)
            transaction.logger.info("password reset", metadata: ["security.event": "password_reset", "user.id": "\(user)"])
        }
    }

    /// `POST /v1/auth/password-change`: needs the current password; every other session ends, the
    /// caller's stays signed in. A wrong current password counts as a failed login.
    func changePassword(user: UUID, session: UUID?, current: String, new: String, address: String?, context: OperationContext) async throws {
        let rows = try await client.query("""
            SELECT u.email, u.email_normalized, u.display_name, c.password_hash FROM users u JOIN credentials c ON c.user_id = u.id
            WHERE u.id = \(user) AND u.status = 'active'
            """, logger: context.logger)
        var found: (String, String, String, String)?
        for try await row in rows.decode((String, String, String, String).self) { found = row }
        guard let (email, normalized, name, stored) = found else { throw IdentityError.userNotFound }
        try await throttle.check(account: normalized, address: address, context: context)
        guard await hasher.verify(current, against: stored) else {
            try await throttle.recordFailure(account: normalized, address: address, context: context)
            context.logger.info("password change refused", metadata: ["security.event": "password_change_failed", "user.id": "\(user)"])
            throw Problem.validation([FieldError("currentPassword", "is not the account's current password")])
        }
        if let problem = PasswordPolicy.shipped.problem(with: new, email: email, displayName: name) {
            throw Problem.validation([FieldError("newPassword", problem)])
        }
        if current == new { throw Problem.validation([FieldError("newPassword", "must differ from the current password")]) }
        let hash = try await hasher.hash(new)
        try await Database.transaction(client, context) { transaction in
            // Only over the hash that was checked: a change that got in first makes this one's
            // current password stale, and it is refused like a wrong one.
            let updated = try await transaction.first(
                "UPDATE credentials SET password_hash = \(hash), updated_at = now() WHERE user_id = \(user) AND password_hash = \(stored) RETURNING 1",
                as: Int.self)
            guard updated != nil else { throw Problem.validation([FieldError("currentPassword", "is not the account's current password")]) }
            try await SessionStore.revokeAll(of: user, except: session, reason: "password-change", in: transaction)
            try await Notifications.request(user: user, to: email, template: "password-changed", data: ["displayName": name], in: transaction)
            try await AuditLog.record(.passwordChanged, actor: user, target: user, in: transaction)
        }
        context.logger.info("password changed", metadata: ["security.event": "password_changed", "user.id": "\(user)"])
    }

    /// `DELETE /v1/sessions`: signs the caller out everywhere, this session included.
    func signOutEverywhere(user: UUID, context: OperationContext) async throws {
        try await Database.transaction(client, context) { transaction in
            let revoked = try await SessionStore.revokeAll(of: user, except: nil, reason: "logout-all", in: transaction)
            try await AuditLog.record(.sessionsRevoked, actor: user, target: user, details: ["reason": "logout-all", "sessions": "\(revoked.count)"],
                                      in: transaction)
        }
    }
}
