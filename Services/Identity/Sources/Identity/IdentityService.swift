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
            logger: dependencies.logger)
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

    public func addRoutes(to router: Router<AppRequestContext>) {
        let accounts = self.accounts
        let limit = maxBodyBytes
        let keyRing = self.keyRing
        let sessions = self.sessions
        router.post("/v1/auth/register") { request, context -> Response in
            let body = try await JSONBody.decode(RegisterRequest.self, from: request, limit: limit)
            let registration = try RegistrationRules.validate(body)
            let user = try await accounts.register(registration, traceparent: request.headers[.traceContext], logger: context.logger)
            return try JSONResponse.make(user, status: .created, cacheControl: "no-store", headers: [.location: "/v1/users/\(user.id.uuidString.lowercased())"])
        }
        router.post("/v1/auth/login") { request, context -> Response in
            let credentials = try await JSONBody.decode(LoginRequest.self, from: request, limit: limit).validated()
            let pair = try await accounts.login(email: credentials.email, password: credentials.password,
                                                userAgent: request.headers[.userAgent], address: Self.clientAddress(request, context),
                                                logger: context.logger)
            return try JSONResponse.make(pair, cacheControl: "no-store")
        }
        router.post("/v1/auth/refresh") { request, context -> Response in
            let body = try await JSONBody.decode(RefreshRequest.self, from: request, limit: limit)
            try body.validate()
            let pair = try await accounts.refresh(token: body.refreshToken, logger: context.logger)
            return try JSONResponse.make(pair, cacheControl: "no-store")
        }
        router.post("/v1/auth/logout") { request, context -> Response in
            let body = try await JSONBody.decode(RefreshRequest.self, from: request, limit: limit)
            try body.validate()
            try await accounts.logout(token: body.refreshToken, logger: context.logger)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.get("/v1/sessions") { _, context -> Response in
            let caller = try context.requirePrincipal()
            let live = try await sessions.live(of: caller.userId, current: caller.sessionId, logger: context.logger)
            return try JSONResponse.make(Page(items: live, nextCursor: nil), cacheControl: "private, no-store")
        }
        router.delete("/v1/sessions/{id}") { _, context -> Response in
            let caller = try context.requirePrincipal()
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
                throw IdentityError.sessionNotFound
            }
            try await sessions.revoke(id, of: caller.userId, logger: context.logger)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.get("/v1/users/me") { _, context -> Response in
            let caller = try context.requirePrincipal()
            return try JSONResponse.make(try await accounts.user(id: caller.userId, logger: context.logger), cacheControl: "private, no-store")
        }
        router.get("/.well-known/jwks.json") { _, _ -> Response in
            try JSONResponse.make(try await keyRing.jwks(), cacheControl: "public, max-age=300")
        }
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

/// An account as its owner sees it.
public struct UserView: Codable, Sendable, Equatable {
    public var id: UUID
    public var email: String
    public var displayName: String
    public var roles: [String]
    public var status: String
    public var createdAt: Date
}

/// `{ accessToken, refreshToken, tokenType, expiresIn }`.
public struct TokenPair: Codable, Sendable {
    public var accessToken: String
    public var refreshToken: String
    public var tokenType = "Bearer"
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
