import Crypto
import Foundation
import Platform
import PostgresNIO
import Testing
@testable import Identity

/// Signing-key rotation on real Postgres: tokens signed by the previous key stay valid until no
/// token it signed can be alive, then the key leaves the JWKS.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct KeyRotationIntegrationTests {
    let logger = TestInfrastructure.logger

    func claims() -> AccessTokenClaims {
        let now = Int64(Date().timeIntervalSince1970)
        return AccessTokenClaims(iss: "marketplace-identity", aud: "marketplace", sub: UUID.v7().uuidString.lowercased(),
                                 roles: ["buyer"], iat: now, nbf: now, exp: now + 900, jti: UUID.v7().uuidString)
    }

    @Test func rotationKeepsThePreviousKeyUntilItsTokensExpire() async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try IdentityService.allMigrations(), logger: logger).migrate()
                let sealing = SymmetricKey(size: .bits256)
                let ring = SigningKeyRing(client: client, sealingKey: sealing, logger: logger)
                let verifier = AccessTokenVerifier(keys: KeyRingSource(ring: ring), issuer: "marketplace-identity", audience: "marketplace")

                let first = try await ring.currentSigner()
                let oldToken = try first.sign(claims())

                let rotation = try await ring.rotate(retireAfter: IdentityService.keyRetirementAge)
                #expect(rotation.retired.isEmpty, "the previous key is kept while its tokens may live")
                let second = try await ring.currentSigner()
                #expect(second.keyId == rotation.created && second.keyId != first.keyId)
                _ = try await verifier.verify(oldToken)
                _ = try await verifier.verify(try second.sign(claims()))
                #expect(Set(try await ring.jwks().keys.map(\.kid)) == [first.keyId, second.keyId])

                // Another replica (a second ring on the same table) verifies both and signs with the new key.
                let replica = SigningKeyRing(client: client, sealingKey: sealing, logger: logger)
                #expect(try await replica.currentSigner().keyId == second.keyId)

                // Once the second key has been current longer than any token lives, the first one goes.
                try await client.query("UPDATE signing_keys SET created_at = created_at - interval '1 hour'", logger: logger)
                let third = try await ring.rotate(retireAfter: IdentityService.keyRetirementAge)
                #expect(third.retired == [first.keyId])
                #expect(Set(try await ring.jwks().keys.map(\.kid)) == [second.keyId, third.created])
                await #expect(throws: TokenError.unknownKeyId(first.keyId)) { try await verifier.verify(oldToken) }

                // A sealed key cannot be opened with another sealing key.
                let stranger = SigningKeyRing(client: client, sealingKey: SymmetricKey(size: .bits256), logger: logger)
                await #expect(throws: (any Error).self) { try await stranger.currentSigner() }
            }
        }
    }
}
