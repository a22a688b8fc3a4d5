import Contracts
import Crypto
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The identity service: accounts, credentials, tokens and signing keys. Owns the `identity` schema.
public struct IdentityService: ServiceModule {
    public static let name = "identity"
    public static let defaultPort = 8081

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module)
    }

    /// Every privacy participant's answers: export parts, erasure acknowledgements, and what keeps
    /// a user from erasure (billing's and orders' obligations).
    public static let consumedTopics = Topics.privacyParticipants.map(Topics.privacy)

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        for service in Topics.privacyParticipants {
            handlers.on(PrivacyEvents.exportPart(service)) { part, _, transaction in
                try await Exports.receive(part, in: transaction)
            }
            handlers.on(PrivacyEvents.erasureCompleted(service)) { done, _, transaction in
                try await Privacy.acknowledge(done, in: transaction)
            }
        }
        for service in PrivacyEvents.obligationHolders {
            handlers.on(PrivacyEvents.obligationOpened(service)) { obligation, _, transaction in
                try await Privacy.obligationOpened(obligation, in: transaction)
            }
            handlers.on(PrivacyEvents.obligationClosed(service)) { obligation, _, transaction in
                try await Privacy.obligationClosed(obligation, in: transaction)
            }
        }
        return handlers
    }

    public var jobHandlers: JobHandlers { Self.housekeeping }

    /// Identity's housekeeping: short-lived security records are dropped once they cannot matter.
    public static var housekeeping: JobHandlers {
        var handlers = JobHandlers()
        handlers.every("prune-login-throttles", .every(.seconds(3600))) { transaction in
            // Long-quiet failure counters: an account's are forgotten after an hour anyway.
            try await transaction.query("""
                DELETE FROM login_throttles WHERE key IN (
                    SELECT key FROM login_throttles WHERE updated_at < now() - interval '1 day' LIMIT 5000)
                """)
        }
        handlers.every("prune-mfa-challenges", .every(.seconds(600))) { transaction in
            try await transaction.query("""
                DELETE FROM mfa_challenges WHERE token_hash IN (
                    SELECT token_hash FROM mfa_challenges WHERE expires_at < now() - interval '1 hour' LIMIT 5000)
                """)
        }
        handlers.every("prune-exports", .every(.seconds(3600))) { transaction in
            try await transaction.query("DELETE FROM exports WHERE id IN (SELECT id FROM exports WHERE expires_at < now() LIMIT 1000)")
        }
        return handlers
    }

    let accounts: AccountService
    let sessions: SessionStore
    let keyRing: SigningKeyRing
    let maxBodyBytes: Int

    public init(dependencies: ServiceDependencies) throws {
        let sealingKey = try Self.sealingKey(dependencies.config, logger: dependencies.logger)
        let ring = SigningKeyRing(client: dependencies.postgres, sealingKey: sealingKey, logger: dependencies.logger)
        self.keyRing = ring
        self.maxBodyBytes = dependencies.settings.maxBodyBytes
        self.accounts = AccountService(
            client: dependencies.postgres, keyRing: ring, hasher: PasswordHasher(),
            tokenSettings: try TokenSettings(dependencies.config, issuer: dependencies.settings.tokenIssuer, audience: dependencies.settings.tokenAudience),
            throttle: LoginThrottle(client: dependencies.postgres, policy: try LoginThrottlePolicy(dependencies.config)),
            recoveryThrottle: RecoveryThrottle(client: dependencies.postgres, policy: try RecoveryThrottlePolicy(dependencies.config)),
            secrets: SecretSealer(key: sealingKey))
        self.sessions = SessionStore(client: dependencies.postgres)
        // Read the common-password list now, not inside the first registration's request.
        _ = PasswordPolicy.shipped
    }

    /// The AES key sealing signing keys at rest: `IDENTITY_KEY_ENCRYPTION_KEY` (base64, 32 bytes).
    /// Without it a fixed development key is used and a warning logged; production must set it.
    static func sealingKey(_ config: ConfigReader, logger: Logger) throws -> SymmetricKey {
        if let encoded = config.string("IDENTITY_KEY_ENCRYPTION_KEY") {
            guard let data = Data(base64Encoded: encoded), data.count == 32 else {
                throw ConfigError.invalidValue(key: "IDENTITY_KEY_ENCRYPTION_KEY", expected: "32 bytes, base64-encoded")
            }
            return SymmetricKey(data: data)
        }
        logger.warning("IDENTITY_KEY_ENCRYPTION_KEY is not set; using the development key (never do this in production)")
        return SymmetricKey(data: SHA256.hash(data: Data("marketplace-development-key-encryption-key".utf8)))
    }

    public var verificationKeys: (any VerificationKeySource)? { KeyRingSource(ring: keyRing) }

    /// The caller's address: the gateway's `X-Forwarded-For` (it sets it from the connection and
    /// drops any client value; only the gateway can reach identity), else the peer address.
    static func clientAddress(_ request: Request, _ context: AppRequestContext) -> String? {
        if let forwarded = request.headers[.init("X-Forwarded-For")!]?.split(separator: ",").first {
            let address = forwarded.trimmingCharacters(in: .whitespaces)
            if !address.isEmpty, address.utf8.count <= 64 { return address }
        }
        return context.clientAddress
    }

    /// A key may be retired once its successor has been current this long: every token it signed
    /// has expired (15 min lifetime + 60 s verifier skew + 60 s for replicas to pick up the rotation).
    public static let keyRetirementAge: TimeInterval = 900 + 60 + 60

    /// The signing key ring over `client`, for the `keys` commands.
    public static func keyRing(client: PostgresClient, config: ConfigReader, logger: Logger) throws -> SigningKeyRing {
        SigningKeyRing(client: client, sealingKey: try sealingKey(config, logger: logger), logger: logger)
    }

    /// `identity create-admin`: creates or promotes the admin account; the id and whether it was created.
    public static func createAdmin(email: String, displayName: String, password: String, client: PostgresClient, logger: Logger) async throws -> (id: UUID, created: Bool) {
        try await Administration.createAdmin(email: email, displayName: displayName, password: password, client: client,
                                             context: .background(service: name, logger: logger))
    }

    public func addRoutes(to router: ServiceRouter) {
        IdentityRoutes(accounts: accounts, sessions: sessions, keyRing: keyRing, administration: Administration(client: accounts.client),
                       policy: AdministrationPolicy(client: accounts.client), limit: maxBodyBytes).add(to: router)
    }
}

struct LoginRequest: Decodable {
    var email: String?
    var password: String?

    /// The credentials, or a 422 naming every missing or unusable field.
    func validated() throws -> (email: String, password: String) {
        var errors: [FieldError] = []
        let email = self.email ?? ""
        let password = self.password ?? ""
        if self.email == nil { errors.append(FieldError("email", "is required")) }
        else if email.isEmpty || email.utf8.count > 254 { errors.append(FieldError("email", "must be 1 to 254 characters")) }
        if self.password == nil { errors.append(FieldError("password", "is required")) }
        else if password.isEmpty || password.count > RegistrationRules.passwordLength.upperBound {
            errors.append(FieldError("password", "must be 1 to \(RegistrationRules.passwordLength.upperBound) characters"))
        }
        if !errors.isEmpty { throw Problem.validation(errors) }
        return (email, password)
    }
}

struct RefreshRequest: Decodable {
    var refreshToken: String

    func validate() throws {
        guard (1...8192).contains(refreshToken.utf8.count) else {
            throw Problem.validation([FieldError("refreshToken", "must be 1 to 8192 characters")])
        }
    }
}

/// An account as its owner (or an admin) sees it.
public struct UserView: Codable, Sendable, Equatable {
    public var id: UUID
    public var email: String
    public var displayName: String
    public var roles: [String]
    public var status: String
    public var emailVerified: Bool
    public var mfaEnabled: Bool
    /// Vendors only.
    public var businessProfile: BusinessProfile?
    public var createdAt: Date

    /// The columns `init(_ row:)` reads, from `users u LEFT JOIN vendor_profiles v LEFT JOIN totp_factors f`.
    static let columns = """
        u.id, u.email, u.display_name, u.roles, u.status, u.email_verified, (f.confirmed_at IS NOT NULL), u.created_at,
        v.business_name, v.licence_number, v.city, v.region, v.country
        """

    init(id: UUID, email: String, displayName: String, roles: [String], status: String, emailVerified: Bool, mfaEnabled: Bool,
         businessProfile: BusinessProfile?, createdAt: Date) {
        self.id = id
        self.email = email
        self.displayName = displayName
        self.roles = roles
        self.status = status
        self.emailVerified = emailVerified
        self.mfaEnabled = mfaEnabled
        self.businessProfile = businessProfile
        self.createdAt = createdAt
    }

    init(_ row: PostgresRow) throws {
        let (id, email, name, roles, status, verified, mfa, created, business, licence, city, region, country) = try row.decode(
            (UUID, String, String, [String], String, Bool, Bool, Date, String?, String?, String?, String?, String?).self)
        var profile: BusinessProfile?
        if let business, let city, let country {
            profile = BusinessProfile(businessName: business, licenceNumber: licence, location: .init(city: city, region: region, country: country))
        }
        self.init(id: id, email: email, displayName: name, roles: roles, status: status, emailVerified: verified, mfaEnabled: mfa,
                  businessProfile: profile, createdAt: created)
    }
}

/// `{ accessToken, refreshToken, tokenType, expiresIn, mfaEnrollmentRequired }`; the last is true when the
/// account holds a staff role its session lacks for want of a second factor.
public struct TokenPair: Codable, Sendable {
    public var accessToken: String
    public var refreshToken: String
    public var tokenType = "Bearer"
    public var expiresIn: Int
    public var mfaEnrollmentRequired = false
}

/// The answer to the password step: tokens, or a challenge for the second factor.
enum LoginResult: Sendable {
    case tokens(TokenPair)
    case mfaRequired(MfaChallenge)
}

/// `{ mfaRequired: true, mfaToken, methods, expiresIn }`: present `mfaToken` with a code to `/v1/auth/mfa/verify`.
public struct MfaChallenge: Codable, Sendable {
    public var mfaRequired = true
    public var mfaToken: String
    public var methods = ["totp", "recoveryCode"]
    public var expiresIn: Int
}

public struct TokenSettings: Sendable {
    public var issuer: String
    public var audience: String
    public var accessTokenLifetime: Int64 = 900
    /// Idle expiry: a refresh token unused this long is dead.
    public var refreshTokenLifetime: TimeInterval = 30 * 24 * 3600
    /// Absolute expiry: a session ends this long after login, however active.
    public var sessionLifetime: TimeInterval = 90 * 24 * 3600
    /// How long a used refresh token may be presented again (a client's concurrent double refresh).
    public var reuseGrace: TimeInterval = 10

    public init(issuer: String, audience: String) {
        self.issuer = issuer
        self.audience = audience
    }

    public init(_ config: ConfigReader, issuer: String, audience: String) throws {
        self.init(issuer: issuer, audience: audience)
        refreshTokenLifetime = TimeInterval(try config.int("IDENTITY_REFRESH_IDLE_DAYS", default: 30, range: 1...365)) * 24 * 3600
        sessionLifetime = TimeInterval(try config.int("IDENTITY_SESSION_MAX_DAYS", default: 90, range: 1...3650)) * 24 * 3600
        reuseGrace = TimeInterval(try config.int("IDENTITY_REFRESH_REUSE_GRACE_SECONDS", default: 10, range: 0...300))
    }
}
