import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOConcurrencyHelpers

/// Claims of an access token (RFC 9068 profile, `typ: at+jwt` in the header).
public struct AccessTokenClaims: Codable, Sendable, Equatable {
    public var iss: String
    public var aud: String
    public var sub: String
    public var roles: [String]
    public var iat: Int64
    public var nbf: Int64
    public var exp: Int64
    public var jti: String
    public var emailVerified: Bool?
    /// The session (refresh-token family) the token was issued in.
    public var sid: String?
    /// How the session was authenticated (RFC 8176): `pwd`, plus `otp` after a TOTP or recovery code.
    public var amr: [String]?

    enum CodingKeys: String, CodingKey {
        case iss, aud, sub, roles, iat, nbf, exp, jti, sid, amr
        case emailVerified = "email_verified"
    }

    public init(iss: String, aud: String, sub: String, roles: [String], iat: Int64, nbf: Int64, exp: Int64, jti: String, emailVerified: Bool? = nil, sid: String? = nil, amr: [String]? = nil) {
        self.iss = iss
        self.aud = aud
        self.sub = sub
        self.roles = roles
        self.iat = iat
        self.nbf = nbf
        self.exp = exp
        self.jti = jti
        self.emailVerified = emailVerified
        self.sid = sid
        self.amr = amr
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        iss = try container.decode(String.self, forKey: .iss)
        // `aud` may be a string or an array of strings (RFC 7519 §4.1.3); keep the one we expect later.
        if let single = try? container.decode(String.self, forKey: .aud) {
            aud = single
        } else {
            aud = try container.decode([String].self, forKey: .aud).joined(separator: " ")
        }
        sub = try container.decode(String.self, forKey: .sub)
        roles = try container.decode([String].self, forKey: .roles)
        iat = try container.decode(Int64.self, forKey: .iat)
        nbf = try container.decode(Int64.self, forKey: .nbf)
        exp = try container.decode(Int64.self, forKey: .exp)
        jti = try container.decode(String.self, forKey: .jti)
        emailVerified = try container.decodeIfPresent(Bool.self, forKey: .emailVerified)
        sid = try container.decodeIfPresent(String.self, forKey: .sid)
        amr = try container.decodeIfPresent([String].self, forKey: .amr)
    }
}

struct JWTHeader: Codable {
    var alg: String
    var typ: String?
    var kid: String?
}

/// Why a token was refused. Never shown to clients in detail; logged at debug level.
public enum TokenError: Error, Equatable, Sendable {
    case malformed
    case unsupportedAlgorithm(String)
    case wrongType
    case missingKeyId
    case unknownKeyId(String)
    case badSignature
    case wrongIssuer
    case wrongAudience
    case expired
    case notYetValid
    case invalidSubject
}

/// Signs access tokens with an Ed25519 key; only identity holds one.
public struct AccessTokenSigner: Sendable {
    public let keyId: String
    let privateKey: Curve25519.Signing.PrivateKey

    public init(keyId: String, privateKey: Curve25519.Signing.PrivateKey) {
        self.keyId = keyId
        self.privateKey = privateKey
    }

    public func sign(_ claims: AccessTokenClaims) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let header = try encoder.encode(JWTHeader(alg: "EdDSA", typ: "at+jwt", kid: keyId))
        let payload = try encoder.encode(claims)
        let signingInput = Base64URL.encode(header) + "." + Base64URL.encode(payload)
        let signature = try privateKey.signature(for: Data(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }
}

/// Where a verifier finds public keys by `kid`.
public protocol VerificationKeySource: Sendable {
    /// The key for `kid`, refreshing from the origin if it is unknown. Nil when it does not exist.
    func key(for kid: String) async -> Curve25519.Signing.PublicKey?
}

/// A fixed set of keys, for identity itself and for tests.
public struct StaticKeySource: VerificationKeySource {
    let keys: [String: Curve25519.Signing.PublicKey]

    public init(_ keys: [String: Curve25519.Signing.PublicKey]) { self.keys = keys }

    public func key(for kid: String) async -> Curve25519.Signing.PublicKey? { keys[kid] }
}

/// Verifies access tokens: EdDSA only, `typ` at+jwt, a known `kid`, signature, `iss`, `aud`, `exp`, `nbf`.
/// The same verifier runs at the gateway and in every service.
public struct AccessTokenVerifier: Sendable {
    let keys: any VerificationKeySource
    let issuer: String
    let audience: String
    let leeway: Int64
    let now: @Sendable () -> Date
    let cache: VerifiedTokenCache?

    /// - Parameter cache: remembers tokens that passed, so a client's next request with the same
    ///   token costs a lookup instead of a signature check; times are checked again on every hit.
    public init(keys: any VerificationKeySource, issuer: String, audience: String, leeway: Int64 = 60,
                now: @escaping @Sendable () -> Date = Date.init, cache: VerifiedTokenCache? = nil) {
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.now = now
        self.cache = cache
    }

    public func verify(_ token: String) async throws(TokenError) -> AccessTokenClaims {
        guard token.utf8.count <= 8192 else { throw .malformed }
        if let cache, let claims = cache.claims(for: token) {
            // The same bytes passed the signature, issuer and audience checks before; time moves on.
            let current = Int64(now().timeIntervalSince1970)
            guard claims.exp + leeway > current else { throw .expired }
            guard claims.nbf - leeway <= current else { throw .notYetValid }
            return claims
        }
        let claims = try await verifyUncached(token)
        cache?.remember(token, claims)
        return claims
    }

    /// The claims of a token verified before and still in its time window, without suspending;
    /// nil when the token must go through `verify`.
    public func verifiedBefore(_ token: String) -> AccessTokenClaims? {
        guard let claims = cache?.claims(for: token) else { return nil }
        let current = Int64(now().timeIntervalSince1970)
        return claims.exp + leeway > current && claims.nbf - leeway <= current ? claims : nil
    }

    func verifyUncached(_ token: String) async throws(TokenError) -> AccessTokenClaims {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerData = Base64URL.decode(String(parts[0])),
              let payloadData = Base64URL.decode(String(parts[1])),
              let signature = Base64URL.decode(String(parts[2])),
              let header = try? JSONDecoder().decode(JWTHeader.self, from: headerData)
        else { throw .malformed }
        // A fixed allow-list: the header never chooses the algorithm.
        guard header.alg == "EdDSA" else { throw .unsupportedAlgorithm(header.alg) }
        guard let typ = header.typ, typ.lowercased() == "at+jwt" || typ.lowercased() == "application/at+jwt" else { throw .wrongType }
        guard let kid = header.kid, !kid.isEmpty, kid.utf8.count <= 128 else { throw .missingKeyId }
        guard let key = await keys.key(for: kid) else { throw .unknownKeyId(kid) }
        let signingInput = Data(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard key.isValidSignature(signature, for: signingInput) else { throw .badSignature }
        guard let claims = try? JSONDecoder().decode(AccessTokenClaims.self, from: payloadData) else { throw .malformed }
        guard claims.iss == issuer else { throw .wrongIssuer }
        guard claims.aud.split(separator: " ").contains(where: { $0 == audience }) else { throw .wrongAudience }
        let current = Int64(now().timeIntervalSince1970)
        guard claims.exp + leeway > current else { throw .expired }
        guard claims.nbf - leeway <= current else { throw .notYetValid }
        guard UUID(uuidString: claims.sub) != nil else { throw .invalidSubject }
        return claims
    }
}

/// Tokens that passed verification, by their exact text, until they expire. Bounded: when full,
/// expired entries go first, then an arbitrary half (a miss only costs a signature check).
/// A key removed from the JWKS does not evict its tokens: keys are retired only after every token
/// they signed has expired.
public final class VerifiedTokenCache: Sendable {
    private let entries = NIOLockedValueBox<[String: AccessTokenClaims]>([:])
    let capacity: Int
    let now: @Sendable () -> Date

    public init(capacity: Int = 10_000, now: @escaping @Sendable () -> Date = Date.init) {
        self.capacity = capacity
        self.now = now
    }

    func claims(for token: String) -> AccessTokenClaims? {
        entries.withLockedValue { $0[token] }
    }

    func remember(_ token: String, _ claims: AccessTokenClaims) {
        let current = Int64(now().timeIntervalSince1970)
        entries.withLockedValue { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value.exp > current }
                if entries.count >= capacity {
                    var kept = 0
                    entries = entries.filter { _ in kept += 1; return kept <= capacity / 2 }
                }
            }
            entries[token] = claims
        }
    }

    public var count: Int { entries.withLockedValue { $0.count } }
}

/// One key of a JSON Web Key Set (RFC 8037 OKP / Ed25519).
public struct JSONWebKey: Codable, Sendable, Equatable {
    public var kty: String
    public var crv: String
    public var x: String
    public var kid: String
    public var alg: String
    public var use: String

    public init(kid: String, publicKey: Curve25519.Signing.PublicKey) {
        self.kty = "OKP"
        self.crv = "Ed25519"
        self.x = Base64URL.encode(publicKey.rawRepresentation)
        self.kid = kid
        self.alg = "EdDSA"
        self.use = "sig"
    }

    public var publicKey: Curve25519.Signing.PublicKey? {
        guard kty == "OKP", crv == "Ed25519", let raw = Base64URL.decode(x) else { return nil }
        return try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
    }
}

public struct JSONWebKeySet: Codable, Sendable, ResponseEncodable {
    public var keys: [JSONWebKey]
    public init(keys: [JSONWebKey]) { self.keys = keys }
}

/// Keys fetched from identity's JWKS endpoint: cached for a TTL, re-fetched when an unknown `kid`
/// appears (at most once per `minimumRefreshInterval`, so junk kids cannot hammer identity), and the
/// last good set kept when identity is unreachable.
public final class RemoteKeySource: VerificationKeySource, @unchecked Sendable {
    struct State {
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        var fetchedAt: ContinuousClock.Instant?
        var lastAttempt: ContinuousClock.Instant?
        var lastForcedAttempt: ContinuousClock.Instant?
    }

    let url: String
    let httpClient: HTTPClient
    let ttl: Duration
    let minimumRefreshInterval: Duration
    let logger: Logger
    private let state = NIOLockedValueBox(State())
    private let refreshLock = AsyncRefreshGate()

    /// `jwks_refreshes_total{outcome}`: fetches that succeeded or failed, and forced refreshes
    /// (for an unknown `kid`) refused by the rate limit.
    static let refreshes = ["success", "failure", "throttled"].reduce(into: [String: Counter]()) {
        $0[$1] = Counter(label: "jwks_refreshes_total", dimensions: [("outcome", $1)])
    }

    public init(url: String, httpClient: HTTPClient, ttl: Duration = .seconds(300), minimumRefreshInterval: Duration = .seconds(5), logger: Logger) {
        self.url = url
        self.httpClient = httpClient
        self.ttl = ttl
        self.minimumRefreshInterval = minimumRefreshInterval
        self.logger = logger
    }

    /// True once a key set has been loaded at least once.
    public var hasKeys: Bool { state.withLockedValue { $0.fetchedAt != nil } }

    public func key(for kid: String) async -> Curve25519.Signing.PublicKey? {
        let (cached, stale) = state.withLockedValue { state -> (Curve25519.Signing.PublicKey?, Bool) in
            let stale = state.fetchedAt.map { ContinuousClock.now - $0 > ttl } ?? true
            return (state.keys[kid], stale)
        }
        if let cached, !stale { return cached }
        await refresh(force: cached == nil)
        return state.withLockedValue { $0.keys[kid] }
    }

    /// Fetches the key set unless one was fetched or attempted too recently.
    public func refresh(force: Bool = false) async {
        await refreshLock.run {
            let allowed = self.state.withLockedValue { state -> Bool in
                let now = ContinuousClock.now
                if force {
                    // Fetches for unknown kids are budgeted on their own, so a periodic refresh just
                    // before a rotation cannot delay the first token signed by the new key.
                    if let last = state.lastForcedAttempt, now - last < self.minimumRefreshInterval { return false }
                    state.lastForcedAttempt = now
                } else {
                    if let fetched = state.fetchedAt, now - fetched < self.ttl { return false }
                    if let last = state.lastAttempt, now - last < self.minimumRefreshInterval { return false }
                }
                state.lastAttempt = now
                return true
            }
            guard allowed else {
                if force { Self.refreshes["throttled"]?.increment() }
                return
            }
            // Two tries: a pooled connection to an identity that restarted fails once, then reconnects.
            for attempt in 1...2 {
                do {
                    try await self.fetch()
                    Self.refreshes["success"]?.increment()
                    return
                } catch {
                    Self.refreshes["failure"]?.increment()
                    // Keep serving the last good set; identity may be restarting.
                    self.logger.warning("jwks refresh failed", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                }
            }
        }
    }

    private func fetch() async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        let response = try await httpClient.execute(request, timeout: .seconds(5))
        guard response.status == .ok else { throw TokenError.malformed }
        let body = try await response.body.collect(upTo: 1 << 20)
        let set = try JSONDecoder().decode(JSONWebKeySet.self, from: Data(buffer: body))
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        for jwk in set.keys where jwk.alg == "EdDSA" {
            if let key = jwk.publicKey { keys[jwk.kid] = key }
        }
        state.withLockedValue {
            $0.keys = keys
            $0.fetchedAt = .now
        }
        logger.debug("jwks refreshed", metadata: ["jwks.keys": "\(keys.count)"])
    }
}

/// Lets one refresh run at a time; callers arriving meanwhile wait for it instead of starting another.
actor AsyncRefreshGate {
    private var running: Task<Void, Never>?

    func run(_ operation: @escaping @Sendable () async -> Void) async {
        if let running {
            await running.value
            return
        }
        let task = Task { await operation() }
        running = task
        await task.value
        running = nil
    }
}

/// Verifies a bearer token when one is present and records the principal; routes that need
/// a caller call `context.requirePrincipal()`. A present but invalid token is always a 401.
public struct AuthenticationMiddleware<Context: ServiceRequestContext>: RouterMiddleware {
    let verifier: AccessTokenVerifier

    public init(verifier: AccessTokenVerifier) { self.verifier = verifier }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else { return try await next(request, context) }
        guard let token = BearerToken.parse(header) else {
            throw Problem(.unauthorized, "The Authorization header must carry a Bearer token.", headers: [.wwwAuthenticate: "Bearer"])
        }
        let claims: AccessTokenClaims
        do {
            claims = try await verifier.verify(token)
        } catch {
            context.logger.debug("token refused", metadata: ["reason": "\(error)"])
            throw Problem(.unauthorized, "The access token is not valid.", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        }
        var context = context
        // The verifier has already checked that `sub` is a UUID.
        context.principal = Principal(userId: UUID(uuidString: claims.sub)!, roles: claims.roles, tokenId: claims.jti,
                                      sessionId: claims.sid.flatMap(UUID.init(uuidString:)), emailVerified: claims.emailVerified ?? false,
                                      authenticationMethods: claims.amr ?? [])
        context.logger[metadataKey: "user.id"] = .string(claims.sub)
        return try await next(request, context)
    }
}

public enum BearerToken {
    /// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, RFC 6750),
    /// scanned byte by byte: this runs on every authenticated request.
    public static func parse(_ header: String) -> String? {
        let bytes = header.utf8
        let scheme: [UInt8] = Array("bearer".utf8)
        var index = bytes.startIndex
        for expected in scheme {
            guard index != bytes.endIndex, bytes[index] | 0x20 == expected else { return nil }
            index = bytes.index(after: index)
        }
        guard index != bytes.endIndex, bytes[index] == 0x20 else { return nil }
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
        while index != bytes.endIndex, isBlank(bytes[index]) { index = bytes.index(after: index) }
        var end = bytes.endIndex
        while end > index, isBlank(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        guard index < end else { return nil }
        return String(header[index..<end])
    }
}
