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
    let logger: Logger
    /// A real hash of a random password, verified when the email is unknown so that both
    /// answers cost the same time.
    let dummyHash = NIOLockedValueBox<String?>(nil)

    func register(_ registration: ValidRegistration, traceparent: String?, logger: Logger) async throws -> UserView {
        let hash = try await hasher.hash(registration.password)
        let id = UUID.v7()
        let roles = [registration.role.rawValue]
        do {
            return try await Database.transaction(client, logger: logger) { connection in
                let rows = try await connection.query("""
                    INSERT INTO users (id, email, email_normalized, display_name, roles)
                    VALUES (\(id), \(registration.email), \(registration.normalizedEmail), \(registration.displayName), \(roles))
                    RETURNING created_at
                    """, logger: logger)
                var createdAt = Date()
                for try await created in rows.decode(Date.self) { createdAt = created }
                try await connection.query(
                    "INSERT INTO credentials (user_id, password_hash) VALUES (\(id), \(hash))", logger: logger)
                let payload = UserRegisteredV1(userId: id, displayName: registration.displayName, roles: roles, status: "active", registeredAt: createdAt)
                let event = try CloudEvent.json(
                    type: EventTypes.userRegistered, source: EventSources.identity, subject: "users/\(id.uuidString.lowercased())",
                    payload: payload, traceparent: traceparent, time: createdAt)
                try await Outbox.enqueue(event, topic: Topics.identityUsers, key: id.uuidString.lowercased(), on: connection, logger: logger)
                logger.info("user registered", metadata: ["user.id": "\(id)"])
                return UserView(id: id, email: registration.email, displayName: registration.displayName, roles: roles, status: "active", createdAt: createdAt)
            }
        } catch where Database.isSQLState(error, Database.uniqueViolation) {
            throw IdentityError.emailTaken
        }
    }

    func login(email: String, password: String, userAgent: String?, address: String? = nil, logger: Logger) async throws -> TokenPair {
        let normalized = RegistrationRules.normalize(email: email)
        try await throttle.check(account: normalized, address: address, logger: logger)
        let rows = try await client.query("""
            SELECT u.id, u.roles, u.status, u.email_verified, c.password_hash
            FROM users u JOIN credentials c ON c.user_id = u.id WHERE u.email_normalized = \(normalized)
            """, logger: logger)
        var found: (UUID, [String], String, Bool, String)?
        for try await row in rows.decode((UUID, [String], String, Bool, String).self) { found = row }
        guard let (id, roles, status, verified, hash) = found else {
            _ = await hasher.verify(password, against: try await dummy())
            logger.info("login failed", metadata: ["security.event": "login_failed", "reason": "unknown-account"])
            try await throttle.recordFailure(account: normalized, address: address, logger: logger)
            throw IdentityError.invalidCredentials
        }
        guard await hasher.verify(password, against: hash) else {
            logger.info("login failed", metadata: ["security.event": "login_failed", "user.id": "\(id)", "reason": "wrong-password"])
            try await throttle.recordFailure(account: normalized, address: address, logger: logger)
            throw IdentityError.invalidCredentials
        }
        guard status == "active" else { throw IdentityError.accountSuspended }
        if PasswordHasher.parameters(of: hash) != hasher.parameters {
            // Stored with older parameters: re-hash now that the password is at hand.
            let upgraded = try await hasher.hash(password)
            try await client.query(
                "UPDATE credentials SET password_hash = \(upgraded), updated_at = now() WHERE user_id = \(id) AND password_hash = \(hash)",
                logger: logger)
            logger.info("password hash upgraded", metadata: ["user.id": "\(id)"])
        }
        let pair = try await Database.transaction(client, logger: logger) { connection in
            let session = UUID.v7()
            let absolute = Date().addingTimeInterval(tokenSettings.sessionLifetime)
            try await connection.query("""
                INSERT INTO sessions (id, user_id, user_agent, expires_at)
                VALUES (\(session), \(id), \(userAgent.map { String($0.prefix(256)) }), \(absolute))
                """, logger: logger)
            return try await issue(userId: id, roles: roles, emailVerified: verified, session: session, on: connection, logger: logger)
        }
        try await throttle.recordSuccess(account: normalized, logger: logger)
        logger.info("login succeeded", metadata: ["security.event": "login_succeeded", "user.id": "\(id)"])
        return pair
    }

    /// Rotates a refresh token: the presented one is used up and a new one joins its session.
    /// A used token presented again within the grace window (a client's concurrent double refresh)
    /// gets another fresh token; after it, reuse means theft and revokes the whole session.
    func refresh(token: String, logger: Logger) async throws -> TokenPair {
        let hash = RefreshTokens.hash(token)
        enum Outcome: Sendable {
            case rotated(TokenPair)
            case reused(session: UUID, user: UUID)
        }
        let grace = tokenSettings.reuseGrace
        let outcome: Outcome = try await Database.transaction(client, logger: logger) { connection in
            let rows = try await connection.query("""
                SELECT t.id, t.family_id, t.user_id, t.expires_at, t.used_at, t.revoked_at, s.expires_at, s.revoked_at,
                       u.roles, u.status, u.email_verified
                FROM refresh_tokens t JOIN sessions s ON s.id = t.family_id JOIN users u ON u.id = t.user_id
                WHERE t.token_hash = \(hash) FOR UPDATE OF t, s
                """, logger: logger)
            var found: (UUID, UUID, UUID, Date, Date?, Date?, Date, Date?, [String], String, Bool)?
            for try await row in rows.decode((UUID, UUID, UUID, Date, Date?, Date?, Date, Date?, [String], String, Bool).self) { found = row }
            guard let (id, session, user, idleExpiry, used, revoked, absoluteExpiry, sessionRevoked, roles, status, verified) = found else {
                throw IdentityError.invalidRefreshToken
            }
            let now = Date()
            guard revoked == nil, sessionRevoked == nil, idleExpiry > now, absoluteExpiry > now else {
                throw IdentityError.invalidRefreshToken
            }
            if let used, now.timeIntervalSince(used) > grace {
                try await SessionStore.revoke(session: session, reason: "refresh-token-reuse", on: connection, logger: logger)
                return .reused(session: session, user: user)
            }
            guard status == "active" else { throw IdentityError.accountSuspended }
            if used == nil {
                try await connection.query("UPDATE refresh_tokens SET used_at = now() WHERE id = \(id)", logger: logger)
            }
            try await connection.query("UPDATE sessions SET last_used_at = now() WHERE id = \(session)", logger: logger)
            return .rotated(try await issue(userId: user, roles: roles, emailVerified: verified, session: session, on: connection, logger: logger))
        }
        switch outcome {
        case .rotated(let pair):
            return pair
        case .reused(let session, let user):
            logger.warning("refresh token reuse detected; session revoked",
                           metadata: ["security.event": "refresh_token_reuse", "user.id": "\(user)", "session.id": "\(session)"])
            throw IdentityError.refreshTokenReused
        }
    }

    /// Ends the session the refresh token belongs to. Unknown or already revoked tokens are not an
    /// error: logging out twice, or with a stale token, leaves the client logged out either way.
    func logout(token: String, logger: Logger) async throws {
        let hash = RefreshTokens.hash(token)
        try await Database.transaction(client, logger: logger) { connection in
            let rows = try await connection.query("SELECT family_id FROM refresh_tokens WHERE token_hash = \(hash)", logger: logger)
            for try await session in rows.decode(UUID.self) {
                try await SessionStore.revoke(session: session, reason: "logout", on: connection, logger: logger)
                logger.info("logged out", metadata: ["session.id": "\(session)"])
            }
        }
    }

    func user(id: UUID, logger: Logger) async throws -> UserView {
        let rows = try await client.query(
            "SELECT id, email, display_name, roles, status, created_at FROM users WHERE id = \(id)", logger: logger)
        for try await (id, email, name, roles, status, created) in rows.decode((UUID, String, String, [String], String, Date).self) {
            return UserView(id: id, email: email, displayName: name, roles: roles, status: status, createdAt: created)
        }
        throw IdentityError.userNotFound
    }

    private func issue(userId: UUID, roles: [String], emailVerified: Bool, session: UUID, on connection: PostgresConnection, logger: Logger) async throws -> TokenPair {
        let signer = try await keyRing.currentSigner()
        let now = Int64(Date().timeIntervalSince1970)
        let claims = AccessTokenClaims(
            iss: tokenSettings.issuer, aud: tokenSettings.audience, sub: userId.uuidString.lowercased(), roles: roles,
            iat: now, nbf: now, exp: now + tokenSettings.accessTokenLifetime, jti: UUID.v7().uuidString.lowercased(),
            emailVerified: emailVerified, sid: session.uuidString.lowercased())
        let accessToken = try signer.sign(claims)
        let refreshToken = RefreshTokens.make()
        let idleExpiry = Date().addingTimeInterval(tokenSettings.refreshTokenLifetime)
        try await connection.query("""
            INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at)
            VALUES (\(UUID.v7()), \(session), \(userId), \(RefreshTokens.hash(refreshToken)), \(idleExpiry))
            """, logger: logger)
        return TokenPair(accessToken: accessToken, refreshToken: refreshToken, expiresIn: Int(tokenSettings.accessTokenLifetime))
    }

    private func dummy() async throws -> String {
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
