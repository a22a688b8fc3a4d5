import Contracts
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import Platform
import PostgresNIO

/// Registration, login and refresh-token rotation against identity's tables.
struct AccountService: Sendable {
    let client: PostgresClient
    let keyRing: SigningKeyRing
    let hasher: PasswordHasher
    let tokenSettings: TokenSettings
    let throttle: LoginThrottle
    let recoveryThrottle: RecoveryThrottle
    let secrets: SecretSealer
    /// A real hash of a random password, verified when the email is unknown so that both
    /// answers cost the same time.
    let dummyHash = NIOLockedValueBox<String?>(nil)

    func register(_ registration: ValidRegistration, context: OperationContext) async throws -> UserView {
        let hash = try await hasher.hash(registration.password)
        let id = UUID.v7()
        let roles = [registration.role.rawValue]
        do {
            return try await Database.transaction(client, context) { transaction in
                let createdAt = try await transaction.first("""
                    INSERT INTO users (id, email, email_normalized, display_name, roles)
                    VALUES (\(id), \(registration.email), \(registration.normalizedEmail), \(registration.displayName), \(roles))
                    RETURNING created_at
                    """, as: Date.self) ?? Date()
                try await transaction.query("INSERT INTO credentials (user_id, password_hash) VALUES (\(id), \(hash))")
                if let profile = registration.businessProfile {
                    try await transaction.query("""
                        INSERT INTO vendor_profiles (user_id, business_name, licence_number, city, region, country)
                        VALUES (\(id), \(profile.businessName), \(profile.licenceNumber), \(profile.location.city),
                                \(profile.location.region), \(profile.location.country))
                        """)
                }
                try await sendVerification(user: id, email: registration.email, displayName: registration.displayName, in: transaction)
                // Event times are business time, like every event's (`ce_time`); `createdAt` is the row's.
                let payload = UserRegisteredV1(userId: id, displayName: registration.displayName, roles: roles, status: "active",
                                               registeredAt: transaction.now, businessName: registration.businessProfile?.businessName)
                try await Outbox.emit(UserEvents.registered, payload, in: transaction)
                try await Notifications.address(of: id, is: registration.email, verified: false, in: transaction)
                transaction.logger.info("user registered", metadata: ["user.id": "\(id)"])
                return UserView(id: id, email: registration.email, displayName: registration.displayName, roles: roles, status: "active",
                                emailVerified: false, mfaEnabled: false, businessProfile: registration.businessProfile, createdAt: createdAt)
            }
        } catch where Database.isSQLState(error, .uniqueViolation) {
            throw IdentityError.emailTaken
        }
    }

    /// Checks the password. Without a confirmed second factor that signs the user in; with one it
    /// answers with a challenge that `POST /v1/auth/mfa/verify` completes.
    func login(email: String, password: String, userAgent: String?, address: String? = nil, context: OperationContext) async throws -> LoginResult {
        let normalized = RegistrationRules.normalize(email: email)
        try await throttle.check(account: normalized, address: address, context: context)
        // No account's address holds U+0000 (registration refuses control characters, and
        // Postgres text cannot store it): such an address is an unknown account, as slow to refuse.
        guard !normalized.contains("\u{0}") else {
            _ = await hasher.verify(password, against: try await dummy())
            try await loginFailed(user: nil, reason: "unknown-account", account: normalized, address: address, context: context)
        }
        let rows = try await client.query("""
            SELECT u.id, u.roles, u.status, u.email_verified, c.password_hash, (f.confirmed_at IS NOT NULL)
            FROM users u JOIN credentials c ON c.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id
            WHERE u.email_normalized = \(normalized)
            """, logger: context.logger)
        var found: (UUID, [String], String, Bool, String, Bool)?
        for try await row in rows.decode((UUID, [String], String, Bool, String, Bool).self) { found = row }
        guard let (id, roles, status, verified, hash, hasTotp) = found else {
            _ = await hasher.verify(password, against: try await dummy())
            try await loginFailed(user: nil, reason: "unknown-account", account: normalized, address: address, context: context)
        }
        guard await hasher.verify(password, against: hash) else {
            try await loginFailed(user: id, reason: "wrong-password", account: normalized, address: address, context: context)
        }
        guard status == "active" else { throw IdentityError.accountSuspended }
        if PasswordHasher.parameters(of: hash) != hasher.parameters {
            // Stored with older parameters: re-hash now that the password is at hand.
            let upgraded = try await hasher.hash(password)
            try await client.query(
                "UPDATE credentials SET password_hash = \(upgraded), updated_at = now() WHERE user_id = \(id) AND password_hash = \(hash)",
                logger: context.logger)
            context.logger.info("password hash upgraded", metadata: ["user.id": "\(id)"])
        }
        if hasTotp {
            return .mfaRequired(try await MultiFactor.challenge(user: id, userAgent: userAgent, client: client, context: context))
        }
        var pair = try await signIn(user: id, roles: roles, emailVerified: verified, amr: ["pwd"], userAgent: userAgent,
                                    account: normalized, context: context)
        if roles.contains(where: { Role(rawValue: $0)?.isStaff == true }) { pair.mfaEnrollmentRequired = true }
        return .tokens(pair)
    }

    /// Starts a session after every factor checked out, and records the sign-in.
    func signIn(user: UUID, roles: [String], emailVerified: Bool, amr: [String], userAgent: String?, account: String?,
                context: OperationContext, extra: (@Sendable (Transaction) async throws -> Void)? = nil) async throws -> TokenPair {
        let pair = try await Database.transaction(client, context) { transaction in
            try await extra?(transaction)
            let session = UUID.v7()
            let absolute = Date().addingTimeInterval(tokenSettings.sessionLifetime)
            try await transaction.query("""
                INSERT INTO sessions (id, user_id, user_agent, expires_at, amr)
                VALUES (\(session), \(user), \(userAgent.map { String($0.prefix(256)) }), \(absolute), \(amr))
                """)
            try await AuditLog.record(.loginSucceeded, actor: user, target: user, details: ["amr": amr.joined(separator: " ")], in: transaction)
            return try await issue(userId: user, roles: roles, emailVerified: emailVerified, session: session, amr: amr, in: transaction)
        }
        if let account { try await throttle.recordSuccess(account: account, context: context) }
        context.logger.info("login succeeded", metadata: ["security.event": "login_succeeded", "user.id": "\(user)"])
        return pair
    }

    private func loginFailed(user: UUID?, reason: String, account: String, address: String?, context: OperationContext) async throws -> Never {
        context.logger.info("login failed", metadata: ["security.event": "login_failed", "user.id": "\(user.map { "\($0)" } ?? "-")", "reason": "\(reason)"])
        try await throttle.recordFailure(account: account, address: address, context: context)
        try await AuditLog.record(.loginFailed, actor: nil, target: user, details: ["reason": reason], client: client, context: context)
        throw IdentityError.invalidCredentials
    }

    /// Rotates a refresh token: the presented one is used up and a new one joins its session.
    /// A used token presented again within the grace window (a client's concurrent double refresh)
    /// gets another fresh token; after it, reuse means theft and revokes the whole session.
    func refresh(token: String, context: OperationContext) async throws -> TokenPair {
        let hash = RefreshTokens.hash(token)
        enum Outcome: Sendable {
            case rotated(TokenPair)
            case reused(session: UUID, user: UUID)
        }
        let grace = tokenSettings.reuseGrace
        let outcome: Outcome = try await Database.transaction(client, context) { transaction in
            let rows = try await transaction.query("""
                SELECT t.id, t.family_id, t.user_id, t.expires_at, t.used_at, t.revoked_at, s.expires_at, s.revoked_at,
                       u.roles, u.status, u.email_verified, s.amr
                FROM refresh_tokens t JOIN sessions s ON s.id = t.family_id JOIN users u ON u.id = t.user_id
                WHERE t.token_hash = \(hash) FOR UPDATE OF t, s
                """)
            var found: (UUID, UUID, UUID, Date, Date?, Date?, Date, Date?, [String], String, Bool, [String])?
            for try await row in rows.decode((UUID, UUID, UUID, Date, Date?, Date?, Date, Date?, [String], String, Bool, [String]).self) { found = row }
            guard let (id, session, user, idleExpiry, used, revoked, absoluteExpiry, sessionRevoked, roles, status, verified, amr) = found else {
                throw IdentityError.invalidRefreshToken
            }
            let now = Date()
            guard revoked == nil, sessionRevoked == nil, idleExpiry > now, absoluteExpiry > now else {
                throw IdentityError.invalidRefreshToken
            }
            if let used, now.timeIntervalSince(used) > grace {
                try await SessionStore.revoke(session: session, reason: "refresh-token-reuse", in: transaction)
                return .reused(session: session, user: user)
            }
            guard status == "active" else { throw IdentityError.accountSuspended }
            if used == nil {
                try await transaction.query("UPDATE refresh_tokens SET used_at = now() WHERE id = \(id)")
            }
            try await transaction.query("UPDATE sessions SET last_used_at = now() WHERE id = \(session)")
            return .rotated(try await issue(userId: user, roles: roles, emailVerified: verified, session: session, amr: amr, in: transaction))
        }
        switch outcome {
        case .rotated(let pair):
            return pair
        case .reused(let session, let user):
            context.logger.warning("refresh token reuse detected; session revoked",
                                   metadata: ["security.event": "refresh_token_reuse", "user.id": "\(user)", "session.id": "\(session)"])
            throw IdentityError.refreshTokenReused
        }
    }

    /// Ends the session the refresh token belongs to. Unknown or already revoked tokens are not an
    /// error: logging out twice, or with a stale token, leaves the client logged out either way.
    func logout(token: String, context: OperationContext) async throws {
        let hash = RefreshTokens.hash(token)
        try await Database.transaction(client, context) { transaction in
            if let session = try await transaction.first("SELECT family_id FROM refresh_tokens WHERE token_hash = \(hash)", as: UUID.self) {
                try await SessionStore.revoke(session: session, reason: "logout", in: transaction)
                transaction.logger.info("logged out", metadata: ["session.id": "\(session)"])
            }
        }
    }

    func user(id: UUID, context: OperationContext) async throws -> UserView {
        let rows = try await client.query("""
            SELECT \(unescaped: UserView.columns) FROM users u
            LEFT JOIN vendor_profiles v ON v.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id
            WHERE u.id = \(id) AND u.status <> 'erased'
            """, logger: context.logger)
        for try await row in rows { return try UserView(row) }
        throw IdentityError.userNotFound
    }

    /// A new access token and refresh token for a session. Staff roles appear in the token only
    /// when the session was signed in with a second factor. Token times are wall-clock (security) time.
    func issue(userId: UUID, roles: [String], emailVerified: Bool, session: UUID, amr: [String], in transaction: Transaction) async throws -> TokenPair {
        let signer = try await keyRing.currentSigner()
        let now = Int64(Date().timeIntervalSince1970)
        let claims = AccessTokenClaims(
            iss: tokenSettings.issuer, aud: tokenSettings.audience, sub: userId.uuidString.lowercased(), roles: Role.effective(roles, amr: amr),
            iat: now, nbf: now, exp: now + tokenSettings.accessTokenLifetime, jti: UUID.v7().uuidString.lowercased(),
            emailVerified: emailVerified, sid: session.uuidString.lowercased(), amr: amr)
        let accessToken = try signer.sign(claims)
        let refreshToken = RefreshTokens.make()
        let idleExpiry = Date().addingTimeInterval(tokenSettings.refreshTokenLifetime)
        try await transaction.query("""
            INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at)
            VALUES (\(UUID.v7()), \(session), \(userId), \(RefreshTokens.hash(refreshToken)), \(idleExpiry))
            """)
        return TokenPair(accessToken: accessToken, refreshToken: refreshToken, expiresIn: Int(tokenSettings.accessTokenLifetime))
    }

    func dummy() async throws -> String {
        if let hash = dummyHash.withLockedValue({ $0 }) { return hash }
        let hash = try await hasher.hash(RefreshTokens.make())
        dummyHash.withLockedValue { $0 = hash }
        return hash
    }
}

enum RefreshTokens {
    /// What is stored and looked up: the token's SHA-256.
    static func hash(_ token: String) -> ByteBuffer {
        ByteBuffer(bytes: Array(SHA256.hash(data: Data(token.utf8))))
    }

    /// 256 random bits, base64url: opaque to clients, stored only as a hash.
    static func make() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        return Base64URL.encode(Data(bytes))
    }
}
