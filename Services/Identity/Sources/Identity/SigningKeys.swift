import Crypto
import Foundation
import Logging
import Platform
import PostgresNIO

/// Identity's Ed25519 signing keys: the newest un-retired key signs; every un-retired key verifies
/// and is published in the JWKS. Private keys are sealed (AES-GCM) before they reach the database.
public actor SigningKeyRing {
    let client: PostgresClient
    let sealingKey: SymmetricKey
    let logger: Logger
    private var signer: AccessTokenSigner?
    private var publicKeys: [String: Curve25519.Signing.PublicKey] = [:]
    private var lastReload: ContinuousClock.Instant?
    /// How long a replica keeps signing with a key before looking for a newer one.
    public static let reloadInterval: Duration = .seconds(60)

    public init(client: PostgresClient, sealingKey: SymmetricKey, logger: Logger) {
        self.client = client
        self.sealingKey = sealingKey
        self.logger = logger
    }

    /// The signer for new tokens, creating the first key if the database has none.
    public func currentSigner() async throws -> AccessTokenSigner {
        if let signer, let lastReload, ContinuousClock.now - lastReload < Self.reloadInterval { return signer }
        if let signer {
            // A rotation on another replica (or by `identity keys rotate`) shows up here within a minute.
            do { try await reload() } catch { return signer }
            return self.signer ?? signer
        }
        try await reload()
        if let signer { return signer }
        try await createKey()
        try await reload()
        guard let signer else { throw IdentityError.signingKeyUnavailable }
        return signer
    }

    /// Public keys to publish in the JWKS.
    public func jwks() async throws -> JSONWebKeySet {
        if publicKeys.isEmpty { _ = try await currentSigner() }
        return JSONWebKeySet(keys: publicKeys.sorted { $0.key < $1.key }.map { JSONWebKey(kid: $0.key, publicKey: $0.value) })
    }

    public func publicKey(for kid: String) async -> Curve25519.Signing.PublicKey? {
        if let key = publicKeys[kid] { return key }
        // Another replica may have rotated; look again, but not on every junk kid.
        if let lastReload, ContinuousClock.now - lastReload < .seconds(5) { return nil }
        try? await reload()
        return publicKeys[kid]
    }

    func reload() async throws {
        lastReload = .now
        let rows = try await client.query(
            "SELECT kid, public_key, sealed_private_key FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 10",
            logger: logger)
        var keys: [String: Curve25519.Signing.PublicKey] = [:]
        var newest: AccessTokenSigner?
        for try await (kid, publicRaw, sealed) in rows.decode((String, ByteBuffer, ByteBuffer).self) {
            keys[kid] = try Curve25519.Signing.PublicKey(rawRepresentation: Array(buffer: publicRaw))
            if newest == nil {
                let box = try AES.GCM.SealedBox(combined: Array(buffer: sealed))
                let raw = try AES.GCM.open(box, using: sealingKey, authenticating: Data(kid.utf8))
                newest = AccessTokenSigner(keyId: kid, privateKey: try Curve25519.Signing.PrivateKey(rawRepresentation: raw))
            }
        }
        publicKeys = keys
        signer = newest
    }

    /// What `rotate` did.
    public struct Rotation: Sendable {
        public var created: String
        public var retired: [String]
    }

    /// Makes a new key current and retires every key whose successor has been current longer than
    /// `retireAfter` (the access-token lifetime plus skew plus the reload interval): no token it
    /// signed can still be valid. Until then the previous key stays in the JWKS.
    public func rotate(retireAfter: TimeInterval) async throws -> Rotation {
        let lockKey = Database.advisoryLockKey("identity.signing_keys")
        let (kid, retired) = try await Database.transaction(client, logger: logger) { connection -> (String, [String]) in
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            let kid = try await insertKey(on: connection)
            let rows = try await connection.query("""
                UPDATE signing_keys k SET retired_at = now()
                WHERE k.retired_at IS NULL AND k.kid <> \(kid) AND EXISTS (
                    SELECT 1 FROM signing_keys n
                    WHERE n.created_at > k.created_at AND n.created_at < now() - make_interval(secs => \(retireAfter)))
                RETURNING k.kid
                """, logger: logger)
            var retired: [String] = []
            for try await old in rows.decode(String.self) { retired.append(old) }
            return (kid, retired.sorted())
        }
        try await reload()
        logger.info("signing keys rotated", metadata: ["jwt.kid": "\(kid)", "jwt.retired": "\(retired)"])
        return Rotation(created: kid, retired: retired)
    }

    /// The keys as an operator sees them: kid, created, retired, newest first.
    public func inventory() async throws -> [(kid: String, created: Date, retired: Date?)] {
        let rows = try await client.query("SELECT kid, created_at, retired_at FROM signing_keys ORDER BY created_at DESC LIMIT 100", logger: logger)
        var keys: [(kid: String, created: Date, retired: Date?)] = []
        for try await (kid, created, retired) in rows.decode((String, Date, Date?).self) { keys.append((kid, created, retired)) }
        return keys
    }

    private func insertKey(on connection: PostgresConnection) async throws -> String {
        let privateKey = Curve25519.Signing.PrivateKey()
        let kid = UUID.v7().uuidString.lowercased()
        let sealed = try AES.GCM.seal(privateKey.rawRepresentation, using: sealingKey, authenticating: Data(kid.utf8))
        guard let combined = sealed.combined else { throw IdentityError.signingKeyUnavailable }
        // clock_timestamp, not the transaction's start: two rotations in a row must order strictly.
        try await connection.query("""
            INSERT INTO signing_keys (kid, public_key, sealed_private_key, created_at)
            VALUES (\(kid), \(ByteBuffer(bytes: privateKey.publicKey.rawRepresentation)), \(ByteBuffer(bytes: combined)), clock_timestamp())
            """, logger: logger)
        return kid
    }

    /// Adds a new signing key. Replicas racing at first start serialise on an advisory lock,
    /// and only the first creates a key.
    func createKey() async throws {
        let lockKey = Database.advisoryLockKey("identity.signing_keys")
        try await Database.transaction(client, logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            let existing = try await connection.query("SELECT count(*) FROM signing_keys WHERE retired_at IS NULL", logger: logger)
            for try await count in existing.decode(Int64.self) where count > 0 { return }
            let kid = try await insertKey(on: connection)
            logger.info("signing key created", metadata: ["jwt.kid": "\(kid)"])
        }
    }
}

/// Identity verifies its own tokens from its key ring, without calling its own JWKS endpoint.
struct KeyRingSource: VerificationKeySource {
    let ring: SigningKeyRing

    func key(for kid: String) async -> Curve25519.Signing.PublicKey? {
        await ring.publicKey(for: kid)
    }
}
