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

    func core(revocations: RevocationCheck?) throws -> GatewayCore {
        let logger = GatewayRevocationFeedTests.logger
        let verifier = AccessTokenVerifier(keys: StaticKeySource(["k1": key.publicKey]), issuer: settings.tokenIssuer, audience: settings.tokenAudience)
        // Never asked: the verifier above holds the key.
        let keys = RemoteKeySource(url: "http://127.0.0.1:1/.well-known/jwks.json", httpClient: .shared, logger: logger)
        let registry = MetricsSetup.bootstrap()
        return GatewayCore(settings: settings, verifier: verifier, keys: keys, registry: PrometheusRegistryEmitter { registry.emit(into: &$0) },
                           revocations: revocations, apiDocuments: try ApiDocuments.load(), pools: [:], logger: logger,
                           accessLog: FixedFieldLog(label: "gateway", service: "gateway", json: true, enabled: false))
    }

    func token(subject: UUID, session: UUID?, issuedAt: Date) throws -> String {
        let iat = Int64(issuedAt.timeIntervalSince1970)
        let claims = AccessTokenClaims(
            iss: settings.tokenIssuer, aud: settings.tokenAudience, sub: subject.uuidString.lowercased(), roles: ["buyer"],
            iat: iat, nbf: iat, exp: iat + 900, jti: UUID().uuidString, sid: session?.uuidString.lowercased())
        return try AccessTokenSigner(keyId: "k1", privateKey: key).sign(claims)
    }

    /// The `Authorization` header value for `token`.
    func request(bearer token: String) -> String {
        "Bearer \(token)"
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
