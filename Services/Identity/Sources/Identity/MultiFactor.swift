import Crypto
import Foundation
import Logging
import Platform
import PostgresNIO

/// Seals small secrets (TOTP keys) with AES-GCM under the configured key, bound to their owner.
struct SecretSealer: Sendable {
    let key: SymmetricKey

    func seal(_ secret: [UInt8], owner: UUID) throws -> [UInt8] {
        guard let combined = try AES.GCM.seal(secret, using: key, authenticating: Data(owner.uuidString.lowercased().utf8)).combined else {
            throw IdentityError.signingKeyUnavailable
        }
        return Array(combined)
    }

    func open(_ sealed: [UInt8], owner: UUID) throws -> [UInt8] {
        Array(try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: key, authenticating: Data(owner.uuidString.lowercased().utf8)))
    }
}

/// `POST /v1/auth/mfa/totp` answer: the secret to enter by hand and the URI to show as a QR code.
public struct TotpEnrolment: Codable, Sendable {
    public var secret: String
    public var provisioningUri: String
}

/// `POST /v1/auth/mfa/totp/confirm` answer: single-use recovery codes, shown this once.
public struct RecoveryCodes: Codable, Sendable {
    public var recoveryCodes: [String]
}

/// TOTP enrolment and the second login step.
enum MultiFactor {
    static let issuer = "Marketplace"
    static let challengeLifetime: TimeInterval = 300
    /// Wrong codes one challenge tolerates; the password step must be repeated after that.
    static let challengeAttempts = 5
    static let recoveryCodeCount = 10

    /// Starts (or restarts) enrolment: a fresh secret, unconfirmed until a first code proves the
    /// authenticator has it. Refused once a factor is confirmed.
    static func enrol(user: UUID, sealer: SecretSealer, client: PostgresClient, context: OperationContext) async throws -> TotpEnrolment {
        try await Database.transaction(client, context) { transaction in
            let rows = try await transaction.query("""
                SELECT u.email, f.confirmed_at FROM users u LEFT JOIN totp_factors f ON f.user_id = u.id
                WHERE u.id = \(user) AND u.status = 'active' FOR UPDATE OF u
                """)
            var found: (String, Date?)?
            for try await row in rows.decode((String, Date?).self) { found = row }
            guard let (email, confirmed) = found else { throw IdentityError.userNotFound }
            guard confirmed == nil else { throw IdentityError.mfaAlreadyEnabled }
            let totp = Totp(secret: Totp.newSecret())
            let sealed = ByteBuffer(bytes: try sealer.seal(totp.secret, owner: user))
            try await transaction.query("""
                INSERT INTO totp_factors (user_id, sealed_secret) VALUES (\(user), \(sealed))
                ON CONFLICT (user_id) DO UPDATE SET sealed_secret = EXCLUDED.sealed_secret, created_at = now(), last_step = NULL
                """)
            return TotpEnrolment(secret: Base32.encode(totp.secret), provisioningUri: totp.provisioningURI(issuer: issuer, account: email))
        }
    }

    /// Confirms enrolment with a first code and issues recovery codes (stored hashed).
    static func confirm(user: UUID, code: String, sealer: SecretSealer, client: PostgresClient, context: OperationContext) async throws -> RecoveryCodes {
        try await Database.transaction(client, context) { transaction in
            let rows = try await transaction.query(
                "SELECT sealed_secret, confirmed_at FROM totp_factors WHERE user_id = \(user) FOR UPDATE")
            var found: (ByteBuffer, Date?)?
            for try await row in rows.decode((ByteBuffer, Date?).self) { found = row }
            guard let (sealed, confirmed) = found else { throw IdentityError.mfaNotEnrolling }
            guard confirmed == nil else { throw IdentityError.mfaAlreadyEnabled }
            let totp = Totp(secret: try sealer.open(Array(buffer: sealed), owner: user))
            guard let step = totp.matchingStep(code, at: Int64(Date().timeIntervalSince1970)) else {
                throw Problem.validation([FieldError("code", "does not match the authenticator; check the device clock and try the current code")])
            }
            try await transaction.query("UPDATE totp_factors SET confirmed_at = now(), last_step = \(step) WHERE user_id = \(user)")
            try await transaction.query("DELETE FROM recovery_codes WHERE user_id = \(user)")
            var codes: [String] = []
            for _ in 0..<recoveryCodeCount {
                let code = makeRecoveryCode()
                codes.append(code)
                try await transaction.query("INSERT INTO recovery_codes (code_hash, user_id) VALUES (\(hashRecoveryCode(code)), \(user))")
            }
            try await AuditLog.record(.mfaEnrolled, actor: user, target: user, in: transaction)
            return RecoveryCodes(recoveryCodes: codes)
        }
    }

    /// After a correct password: a short-lived, single-use token standing for "first factor done".
    static func challenge(user: UUID, userAgent: String?, client: PostgresClient, context: OperationContext) async throws -> MfaChallenge {
        let token = RefreshTokens.make()
        try await client.query("""
            INSERT INTO mfa_challenges (token_hash, user_id, user_agent, expires_at)
            VALUES (\(RefreshTokens.hash(token)), \(user), \(userAgent.map { String($0.prefix(256)) }), \(Date().addingTimeInterval(challengeLifetime)))
            """, logger: context.logger)
        return MfaChallenge(mfaToken: token, expiresIn: Int(challengeLifetime))
    }

    enum Proof: Sendable {
        case totp(String)
        case recoveryCode(String)
    }

    /// What checking a proof against a challenge found; failures are committed, not rolled back.
    enum Verdict: Sendable {
        case accepted(user: UUID, userAgent: String?, roles: [String], emailVerified: Bool, email: String)
        case wrongCode
        case invalidChallenge
    }

    /// Checks the second factor inside the caller's transaction: the challenge is live, and the
    /// code is current and newer than the last one accepted (a replayed code is refused), or it is
    /// an unused recovery code.
    static func check(challenge token: String, proof: Proof, sealer: SecretSealer, in transaction: Transaction) async throws -> Verdict {
        let hash = RefreshTokens.hash(token)
        let rows = try await transaction.query("""
            SELECT c.user_id, c.user_agent, c.failures, u.roles, u.status, u.email_verified, u.email, f.sealed_secret, f.last_step
            FROM mfa_challenges c JOIN users u ON u.id = c.user_id JOIN totp_factors f ON f.user_id = c.user_id
            WHERE c.token_hash = \(hash) AND c.used_at IS NULL AND c.expires_at > now() AND f.confirmed_at IS NOT NULL
            FOR UPDATE OF c, f
            """)
        var found: (UUID, String?, Int, [String], String, Bool, String, ByteBuffer, Int64?)?
        for try await row in rows.decode((UUID, String?, Int, [String], String, Bool, String, ByteBuffer, Int64?).self) { found = row }
        guard let (user, agent, failures, roles, status, verified, email, sealed, lastStep) = found,
              failures < challengeAttempts, status == "active" else { return .invalidChallenge }
        guard try await accept(proof, user: user, sealed: sealed, lastStep: lastStep, sealer: sealer, in: transaction) else {
            try await transaction.query("UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = \(hash)")
            try await AuditLog.record(.mfaFailed, actor: nil, target: user, in: transaction)
            return .wrongCode
        }
        try await transaction.query("UPDATE mfa_challenges SET used_at = now() WHERE token_hash = \(hash)")
        return .accepted(user: user, userAgent: agent, roles: roles, emailVerified: verified, email: email)
    }

    /// Uses up a proof of the user's second factor (the factor row locked by the caller): a TOTP
    /// code newer than the last accepted one, or an unused recovery code.
    static func accept(_ proof: Proof, user: UUID, sealed: ByteBuffer, lastStep: Int64?, sealer: SecretSealer,
                       in transaction: Transaction) async throws -> Bool {
        switch proof {
        case .totp(let code):
            let totp = Totp(secret: try sealer.open(Array(buffer: sealed), owner: user))
            guard let step = totp.matchingStep(code, at: Int64(Date().timeIntervalSince1970)), step > (lastStep ?? Int64.min) else { return false }
            try await transaction.query("UPDATE totp_factors SET last_step = \(step) WHERE user_id = \(user)")
            return true
        case .recoveryCode(let code):
            let used = try await transaction.query("""
                UPDATE recovery_codes SET used_at = now() WHERE code_hash = \(hashRecoveryCode(code)) AND user_id = \(user) AND used_at IS NULL
                RETURNING 1
                """)
            var accepted = false
            for try await _ in used.decode(Int.self) { accepted = true }
            if accepted { try await AuditLog.record(.recoveryCodeUsed, actor: user, target: user, in: transaction) }
            return accepted
        }
    }

    /// Ten base32 characters in two groups (50 bits): typed by hand, used once.
    static func makeRecoveryCode() -> String {
        var generator = SystemRandomNumberGenerator()
        let characters = Array(Base32.encode((0..<7).map { _ in generator.next() }).lowercased().prefix(10))
        return String(characters[0..<5]) + "-" + String(characters[5..<10])
    }

    static func hashRecoveryCode(_ code: String) -> ByteBuffer {
        let normalized = code.lowercased().filter { $0.isLetter || $0.isNumber }
        return ByteBuffer(bytes: Array(SHA256.hash(data: Data(normalized.utf8))))
    }
}

extension AccountService {
    /// The second login step. A wrong code counts against the challenge and the account's throttle.
    func completeLogin(challenge: String, proof: MultiFactor.Proof, context: OperationContext) async throws -> TokenPair {
        enum Outcome: Sendable {
            case signedIn(TokenPair)
            case refused(MultiFactor.Verdict)
        }
        let outcome: Outcome = try await Database.transaction(client, context) { transaction in
            let verdict = try await MultiFactor.check(challenge: challenge, proof: proof, sealer: secrets, in: transaction)
            guard case .accepted(let user, let agent, let roles, let verified, let email) = verdict else {
                return .refused(verdict)
            }
            let session = UUID.v7()
            let amr = ["pwd", "otp"]
            try await transaction.query("""
                INSERT INTO sessions (id, user_id, user_agent, expires_at, amr)
                VALUES (\(session), \(user), \(agent), \(Date().addingTimeInterval(tokenSettings.sessionLifetime)), \(amr))
                """)
            try await AuditLog.record(.loginSucceeded, actor: user, target: user, details: ["amr": amr.joined(separator: " ")], in: transaction)
            let pair = try await issue(userId: user, roles: roles, emailVerified: verified, session: session, amr: amr, in: transaction)
            try await transaction.query("DELETE FROM login_throttles WHERE key = \(LoginThrottle.accountKey(RegistrationRules.normalize(email: email)))")
            transaction.logger.info("login succeeded", metadata: ["security.event": "login_succeeded", "user.id": "\(user)", "amr": "pwd otp"])
            return .signedIn(pair)
        }
        switch outcome {
        case .signedIn(let pair):
            LoginThrottle.outcomes["success"]?.increment()
            return pair
        case .refused(.wrongCode):
            LoginThrottle.outcomes["failure"]?.increment()
            context.logger.info("second factor refused", metadata: ["security.event": "mfa_failed"])
            throw IdentityError.invalidMfaCode
        case .refused:
            throw IdentityError.invalidMfaChallenge
        }
    }
}
