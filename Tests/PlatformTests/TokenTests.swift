import Crypto
import Foundation
import Synchronization
import Testing
@testable import Platform

@Suite struct TokenTests {
    let key = Curve25519.Signing.PrivateKey()
    let now = Date(timeIntervalSince1970: 1_795_255_200)
    let subject = "0192f1a0-1111-7000-8000-000000000001"

    var signer: AccessTokenSigner { AccessTokenSigner(keyId: "k1", privateKey: key) }

    func verifier(keys: [String: Curve25519.Signing.PublicKey]? = nil) -> AccessTokenVerifier {
        let fixed = now
        return AccessTokenVerifier(keys: StaticKeySource(keys ?? ["k1": key.publicKey]), issuer: "marketplace-identity",
                                   audience: "marketplace", leeway: 60, now: { fixed })
    }

    func claims(iss: String = "marketplace-identity", aud: String = "marketplace", iat: Int64? = nil, nbf: Int64? = nil, exp: Int64? = nil) -> AccessTokenClaims {
        let t = Int64(now.timeIntervalSince1970)
        return AccessTokenClaims(iss: iss, aud: aud, sub: subject, roles: ["buyer"], iat: iat ?? t, nbf: nbf ?? t, exp: exp ?? t + 900, jti: "j1")
    }

    func segment(_ json: String) -> String { Base64URL.encode(Data(json.utf8)) }

    @Test func aValidTokenVerifies() async throws {
        let token = try signer.sign(claims())
        let verified = try await verifier().verify(token)
        #expect(verified.sub == subject)
        #expect(verified.roles == ["buyer"])
    }

    @Test func identityClaimsRoundTripWithTheirJWTNames() async throws {
        var full = claims()
        full.emailVerified = true
        full.sid = "0192f1a0-5555-7000-8000-00000000000a"
        full.amr = ["pwd", "otp"]
        let token = try signer.sign(full)
        let payload = try #require(Base64URL.decode(String(token.split(separator: ".")[1])))
        let json = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        #expect(json["email_verified"] as? Bool == true && json["amr"] as? [String] == ["pwd", "otp"] && json["sid"] as? String == full.sid)
        #expect(Set(json.keys) == ["iss", "aud", "sub", "roles", "iat", "nbf", "exp", "jti", "email_verified", "sid", "amr"])
        #expect(try await verifier().verify(token) == full)
        // A token without the optional claims still verifies; they read as absent.
        let bare = try await verifier().verify(try signer.sign(claims()))
        #expect(bare.emailVerified == nil && bare.sid == nil && bare.amr == nil)
    }

    /// Counts key lookups: a lookup happens once per signature check.
    final class CountingKeys: VerificationKeySource, @unchecked Sendable {
        let key: Curve25519.Signing.PublicKey
        let lookups = Mutex(0)
        init(_ key: Curve25519.Signing.PublicKey) { self.key = key }
        func key(for kid: String) async -> Curve25519.Signing.PublicKey? {
            lookups.withLock { $0 += 1 }
            return kid == "k1" ? key : nil
        }
    }

    @Test func aCachedTokenSkipsTheSignatureCheckButNotTheClock() async throws {
        let clock = Mutex(now)
        let keys = CountingKeys(key.publicKey)
        let cache = VerifiedTokenCache(capacity: 4, now: { clock.withLock { $0 } })
        let verifier = AccessTokenVerifier(keys: keys, issuer: "marketplace-identity", audience: "marketplace", leeway: 60,
                                           now: { clock.withLock { $0 } }, cache: cache)
        let token = try signer.sign(claims())
        for _ in 0..<3 { #expect(try await verifier.verify(token).sub == subject) }
        #expect(keys.lookups.withLock { $0 } == 1, "checked once, then remembered")
        // A different text (tampered signature) is never answered from the cache.
        let tampered = String(token.dropLast(2)) + (token.hasSuffix("AA") ? "BA" : "AA")
        await #expect(throws: TokenError.badSignature) { try await verifier.verify(tampered) }
        // Expiry still applies to a remembered token.
        clock.withLock { $0 = now.addingTimeInterval(900 + 61) }
        await #expect(throws: TokenError.expired) { try await verifier.verify(token) }
        // Bounded: it never grows past its capacity.
        clock.withLock { $0 = now }
        for index in 0..<10 {
            var other = claims()
            other.jti = "j\(index)"
            _ = try await verifier.verify(try signer.sign(other))
        }
        #expect(cache.count <= 4)
    }

    @Test func expiredIsRefusedButSkewIsTolerated() async throws {
        let t = Int64(now.timeIntervalSince1970)
        await #expect(throws: TokenError.expired) { try await verifier().verify(try signer.sign(claims(exp: t - 61))) }
        _ = try await verifier().verify(try signer.sign(claims(exp: t - 30)))
    }

    @Test func notYetValidIsRefused() async throws {
        let t = Int64(now.timeIntervalSince1970)
        await #expect(throws: TokenError.notYetValid) { try await verifier().verify(try signer.sign(claims(nbf: t + 120))) }
    }

    @Test func wrongIssuerOrAudienceIsRefused() async throws {
        await #expect(throws: TokenError.wrongIssuer) { try await verifier().verify(try signer.sign(claims(iss: "someone-else"))) }
        await #expect(throws: TokenError.wrongAudience) { try await verifier().verify(try signer.sign(claims(aud: "other-api"))) }
    }

    @Test func aTamperedPayloadIsRefused() async throws {
        let parts = try signer.sign(claims()).split(separator: ".").map(String.init)
        var forged = claims()
        forged.roles = ["admin"]
        let payload = Base64URL.encode(try JSONEncoder().encode(forged))
        await #expect(throws: TokenError.badSignature) { try await verifier().verify("\(parts[0]).\(payload).\(parts[2])") }
    }

    @Test func algNoneIsRefused() async throws {
        let payload = Base64URL.encode(try JSONEncoder().encode(claims()))
        let token = segment(#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#) + "." + payload + "."
        await #expect(throws: TokenError.unsupportedAlgorithm("none")) { try await verifier().verify(token) }
    }

    @Test func hs256SignedWithThePublicKeyIsRefused() async throws {
        let payload = Base64URL.encode(try JSONEncoder().encode(claims()))
        let header = segment(#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#)
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(payload)".utf8), using: SymmetricKey(data: key.publicKey.rawRepresentation))
        let token = "\(header).\(payload).\(Base64URL.encode(Data(mac)))"
        await #expect(throws: TokenError.unsupportedAlgorithm("HS256")) { try await verifier().verify(token) }
    }

    @Test func anUnknownKidIsRefused() async throws {
        let other = AccessTokenSigner(keyId: "k2", privateKey: Curve25519.Signing.PrivateKey())
        await #expect(throws: TokenError.unknownKeyId("k2")) { try await verifier().verify(try other.sign(claims())) }
    }

    @Test func aKnownKidWithAnotherKeysSignatureIsRefused() async throws {
        let impostor = AccessTokenSigner(keyId: "k1", privateKey: Curve25519.Signing.PrivateKey())
        await #expect(throws: TokenError.badSignature) { try await verifier().verify(try impostor.sign(claims())) }
    }

    @Test func aTokenOfAnotherTypeIsRefused() async throws {
        let payload = Base64URL.encode(try JSONEncoder().encode(claims()))
        let header = segment(#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#)
        let signature = try key.signature(for: Data("\(header).\(payload)".utf8))
        await #expect(throws: TokenError.wrongType) { try await verifier().verify("\(header).\(payload).\(Base64URL.encode(signature))") }
    }

    @Test func garbageIsMalformed() async {
        await #expect(throws: TokenError.malformed) { try await verifier().verify("not-a-token") }
        await #expect(throws: TokenError.malformed) { try await verifier().verify("a.b.c") }
    }

    @Test func jwksCarriesTheRawPublicKey() throws {
        let jwk = JSONWebKey(kid: "k1", publicKey: key.publicKey)
        #expect(jwk.kty == "OKP" && jwk.crv == "Ed25519" && jwk.alg == "EdDSA")
        #expect(jwk.publicKey?.rawRepresentation == key.publicKey.rawRepresentation)
        #expect(BearerToken.parse("Bearer abc") == "abc")
        #expect(BearerToken.parse("Basic abc") == nil)
        #expect(BearerToken.parse("bEaReR   abc.def  ") == "abc.def")
        for refused in ["Bearer", "Bearer ", "Bearer    ", "Bearerabc", "Bearer\tabc", "Bear abc", ""] {
            #expect(BearerToken.parse(refused) == nil, "\(refused)")
        }
    }
}
