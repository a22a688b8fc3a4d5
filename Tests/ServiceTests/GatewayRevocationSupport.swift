import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import Logging
import Synchronization
@testable import Gateway
@testable import Platform

/// A gateway responder whose verifier trusts one test key, and tokens signed with it.
struct GatewayAuthenticationHarness {
    let key = Curve25519.Signing.PrivateKey()
    let settings: GatewaySettings

    init() throws {
        settings = try GatewaySettings(ConfigReader(values: [:]))
    }

    func responder(revocations: RevocationCheck?) throws -> GatewayResponder {
        let logger = GatewayRevocationFeedTests.logger
        let verifier = AccessTokenVerifier(keys: StaticKeySource(["k1": key.publicKey]), issuer: settings.tokenIssuer, audience: settings.tokenAudience)
        // Never asked: the verifier above holds the key; the proxy is not reached by these tests.
        let keys = RemoteKeySource(url: "http://127.0.0.1:1/.well-known/jwks.json", httpClient: .shared, logger: logger)
        let proxy = Proxy(httpClient: .shared, defaultTimeout: .seconds(1), defaultMaxBodyBytes: settings.maxBodyBytes, logger: logger)
        return GatewayResponder(
            settings: settings, verifier: verifier, keys: keys, proxy: proxy, registry: MetricsSetup.bootstrap(),
            authLimiter: RateLimiter(policy: settings.authRateLimit), defaultLimiter: RateLimiter(policy: settings.defaultRateLimit),
            revocations: revocations)
    }

    func token(subject: UUID, session: UUID?, issuedAt: Date) throws -> String {
        let iat = Int64(issuedAt.timeIntervalSince1970)
        let claims = AccessTokenClaims(
            iss: settings.tokenIssuer, aud: settings.tokenAudience, sub: subject.uuidString.lowercased(), roles: ["buyer"],
            iat: iat, nbf: iat, exp: iat + 900, jti: UUID().uuidString, sid: session?.uuidString.lowercased())
        return try AccessTokenSigner(keyId: "k1", privateKey: key).sign(claims)
    }

    func request(bearer token: String, path: String = "/v1/users/me") -> Request {
        var fields = HTTPFields()
        fields[.authorization] = "Bearer \(token)"
        return Request(head: HTTPRequest(method: .get, scheme: "http", authority: "gateway.test", path: path, headerFields: fields),
                       body: RequestBody(buffer: ByteBuffer()))
    }
}

/// A flag a test flips while the code under test reads it.
final class ManualFlag: Sendable {
    private let state = Mutex(false)

    var value: Bool {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}
