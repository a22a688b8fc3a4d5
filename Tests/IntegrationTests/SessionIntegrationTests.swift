import Contracts
import Crypto
import Foundation
import Logging
import Platform
import PostgresNIO
import Testing
@testable import Identity

/// The refresh-family story on real Postgres: rotation, reuse inside and outside the grace window,
/// idle and absolute expiry, logout, listing and revoking sessions.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct SessionIntegrationTests {
    let logger = TestInfrastructure.logger
    var context: OperationContext { .background(service: "identity", logger: logger) }
    static let password = "correct horse battery"

    /// An identity schema with one active user; `body` gets the account service and the user's email.
    func withAccounts(_ body: @Sendable (AccountService, SessionStore, PostgresClient, String) async throws -> Void) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try IdentityService.allMigrations(), logger: logger).migrate()
                let hasher = PasswordHasher()
                let email = "\(schema)@example.com"
                let id = UUID.v7()
                let hash = try await hasher.hash(Self.password)
                try await client.query("INSERT INTO users (id, email, email_normalized, display_name, roles) VALUES (\(id), \(email), \(email), 'Ann', ARRAY['buyer'])", logger: logger)
                try await client.query("INSERT INTO credentials (user_id, password_hash) VALUES (\(id), \(hash))", logger: logger)
                let ring = SigningKeyRing(client: client, sealingKey: SymmetricKey(size: .bits256), logger: logger)
                let accounts = AccountService.forTests(client: client, ring: ring, hasher: hasher)
                try await body(accounts, SessionStore(client: client), client, email)
            }
        }
    }

    func expectRefused(_ accounts: AccountService, _ token: String, _ comment: Comment) async {
        await #expect(throws: IdentityError.self, comment) { try await accounts.refresh(token: token, context: context) }
    }

    @Test func rotationReuseAndTheGraceWindow() async throws {
        try await withAccounts { accounts, _, client, email in
            let first = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "tests", context: context)
            let second = try await accounts.refresh(token: first.refreshToken, context: context)
            #expect(second.refreshToken != first.refreshToken)
            // A client's concurrent double refresh: the used token again, within the grace window.
            let third = try await accounts.refresh(token: first.refreshToken, context: context)
            #expect(third.refreshToken != second.refreshToken)
            // Later, the same used token is theft: the whole session goes.
            try await client.query("UPDATE refresh_tokens SET used_at = now() - interval '1 minute' WHERE used_at IS NOT NULL", logger: logger)
            await #expect(throws: IdentityError.refreshTokenReused) { try await accounts.refresh(token: first.refreshToken, context: context) }
            await expectRefused(accounts, second.refreshToken, "the rotated successor dies with its session")
            await expectRefused(accounts, third.refreshToken, "every token of the session dies")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM sessions WHERE revoked_reason = 'refresh-token-reuse'") == 1)
            // The gateway hears of it: the session alone, not the user's other sessions.
            let revoked = try await Self.revocations(client)
            #expect(revoked.map(\.reason) == ["refresh-token-reuse"] && revoked.first?.scope == .sessions && revoked.first?.sessionIds.count == 1)
        }
    }

    @Test func concurrentRefreshesWithinGraceBothSucceed() async throws {
        try await withAccounts { accounts, _, _, email in
            let pair = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: nil, context: context)
            let results = try await withThrowingTaskGroup(of: TokenPair.self) { group in
                for _ in 0..<2 { group.addTask { try await accounts.refresh(token: pair.refreshToken, context: context) } }
                var pairs: [TokenPair] = []
                for try await result in group { pairs.append(result) }
                return pairs
            }
            #expect(results.count == 2)
            #expect(Set(results.map(\.refreshToken)).count == 2)
            for result in results { _ = try await accounts.refresh(token: result.refreshToken, context: context) }
        }
    }

    @Test func idleAndAbsoluteExpiryEndRefreshing() async throws {
        try await withAccounts { accounts, sessions, client, email in
            let idle = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: nil, context: context)
            try await client.query("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = \(RefreshTokens.hash(idle.refreshToken))", logger: logger)
            await expectRefused(accounts, idle.refreshToken, "an idle-expired token")

            let old = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: nil, context: context)
            let session = try await TestInfrastructure.withSession(of: old.refreshToken, client)
            try await client.query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = \(session)", logger: logger)
            await expectRefused(accounts, old.refreshToken, "a session past its absolute expiry")
            let user = try await TestInfrastructure.userOfSession(session, client)
            #expect(try await sessions.live(of: user, current: nil, context: context).allSatisfy { $0.id != session })
        }
    }

    @Test func logoutAndRevocationEndSessions() async throws {
        try await withAccounts { accounts, sessions, client, email in
            let phone = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "phone", context: context)
            let laptop = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "laptop", context: context)
            let phoneSession = try await TestInfrastructure.withSession(of: phone.refreshToken, client)
            let laptopSession = try await TestInfrastructure.withSession(of: laptop.refreshToken, client)
            let user = try await TestInfrastructure.userOfSession(phoneSession, client)

            let listed = try await sessions.live(of: user, current: laptopSession, context: context)
            #expect(Set(listed.map(\.id)) == [phoneSession, laptopSession])
            #expect(listed.first { $0.id == laptopSession }?.current == true)
            #expect(listed.first { $0.id == phoneSession }?.userAgent == "phone")

            try await accounts.logout(token: phone.refreshToken, context: context)
            try await accounts.logout(token: phone.refreshToken, context: context)  // twice is fine
            try await accounts.logout(token: "never-issued", context: context)
            await expectRefused(accounts, phone.refreshToken, "a logged-out session")
            #expect(try await Self.revocations(client).map(\.sessionIds) == [[phoneSession]], "one event for the logout, none for the repeats")

            let other = UUID.v7()
            await #expect(throws: IdentityError.sessionNotFound) { try await sessions.revoke(laptopSession, of: other, context: context) }
            try await sessions.revoke(laptopSession, of: user, context: context)
            await expectRefused(accounts, laptop.refreshToken, "a revoked session")
            let revocations = try await Self.revocations(client)
            #expect(revocations.map(\.reason) == ["logout", "revoked-by-user"] && revocations.allSatisfy { $0.scope == .sessions })
            await #expect(throws: IdentityError.sessionNotFound) { try await sessions.revoke(laptopSession, of: user, context: context) }
            #expect(try await sessions.live(of: user, current: nil, context: context).isEmpty)
        }
    }
}

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct LoginThrottleIntegrationTests {
    let logger = TestInfrastructure.logger
    var context: OperationContext { .background(service: "identity", logger: logger) }

    func isThrottled(_ error: any Error) -> Bool {
        (error as? Problem)?.kind == .rateLimited && (error as? Problem)?.headers[.retryAfter] != nil
    }

    @Test func repeatedFailuresLockTheAccountUntilTheLockExpires() async throws {
        try await SessionIntegrationTests().withAccounts { accounts, _, client, email in
            for _ in 1...6 {
                await #expect(throws: IdentityError.invalidCredentials) {
                    try await accounts.passwordLogin(email: email, password: "wrong password!", userAgent: nil, address: "10.0.0.1", context: context)
                }
            }
            // Locked: even the right password is refused, before any hashing.
            do {
                _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, address: "10.0.0.2", context: context)
                Issue.record("a locked account logged in")
            } catch {
                #expect(isThrottled(error), "\(error)")
            }
            // An unknown email is throttled exactly the same way, so locks reveal nothing.
            for _ in 1...6 {
                _ = try? await accounts.passwordLogin(email: "nobody-\(email)", password: "wrong password!", userAgent: nil, address: "10.0.0.3", context: context)
            }
            do {
                _ = try await accounts.passwordLogin(email: "nobody-\(email)", password: "wrong password!", userAgent: nil, address: "10.0.0.4", context: context)
                Issue.record("an unknown account was not throttled")
            } catch {
                #expect(isThrottled(error), "\(error)")
            }
            // The lock runs out; a success then forgets the failures.
            try await client.query("UPDATE login_throttles SET locked_until = now() - interval '1 second'", logger: logger)
            _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, address: "10.0.0.2", context: context)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM login_throttles WHERE key = \(LoginThrottle.accountKey(email))") == 0)
        }
    }

    @Test func quietCountersAreForgotten() async throws {
        try await SessionIntegrationTests().withAccounts { accounts, _, client, email in
            try await client.query("INSERT INTO login_throttles (key, failures, updated_at) VALUES ('account:stale@example.com', 3, now() - interval '2 days')", logger: logger)
            // An old run of failures no longer counts towards a lock either.
            try await client.query("INSERT INTO login_throttles (key, failures, updated_at) VALUES (\(LoginThrottle.accountKey(email)), 5, now() - interval '2 hours')", logger: logger)
            _ = try? await accounts.passwordLogin(email: email, password: "wrong password!", userAgent: nil, address: nil, context: context)
            #expect(try await TestInfrastructure.scalar(client, "SELECT failures FROM login_throttles WHERE key = \(LoginThrottle.accountKey(email))") == 1)
            // Identity's hourly housekeeping job drops counters quiet for a day; requests never do.
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM login_throttles WHERE key = 'account:stale@example.com'") == 1)
            try await Database.transaction(client, context) { transaction in
                try await IdentityService.housekeeping.perform(recurring: "prune-login-throttles", in: transaction)
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM login_throttles WHERE key = 'account:stale@example.com'") == 0)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM login_throttles WHERE key = \(LoginThrottle.accountKey(email))") == 1)
            _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, context: context)
        }
    }

    @Test func oneAddressFailingOnManyAccountsIsLocked() async throws {
        try await SessionIntegrationTests().withAccounts { accounts, _, _, email in
            for index in 1...20 {
                _ = try? await accounts.passwordLogin(email: "spray-\(index)@example.com", password: "wrong password!", userAgent: nil, address: "192.0.2.7", context: context)
            }
            do {
                _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, address: "192.0.2.7", context: context)
                Issue.record("a locked address logged in")
            } catch {
                #expect(isThrottled(error), "\(error)")
            }
            _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, address: "192.0.2.8", context: context)
        }
    }
}

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct PasswordHashUpgradeIntegrationTests {
    let logger = TestInfrastructure.logger
    var context: OperationContext { .background(service: "identity", logger: logger) }

    @Test func aHashWithOldParametersIsUpgradedAtLogin() async throws {
        try await SessionIntegrationTests().withAccounts { accounts, _, client, email in
            let weak = PasswordHasher(parameters: .init(memoryKiB: 4_096, iterations: 1, parallelism: 1))
            let old = try await weak.hash(SessionIntegrationTests.password)
            try await client.query("UPDATE credentials SET password_hash = \(old)", logger: logger)
            _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, context: context)
            let rows = try await client.query("SELECT password_hash FROM credentials", logger: logger)
            var stored = ""
            for try await hash in rows.decode(String.self) { stored = hash }
            #expect(PasswordHasher.parameters(of: stored) == .owasp)
            #expect(await PasswordHasher().verify(SessionIntegrationTests.password, against: stored))
            _ = try await accounts.passwordLogin(email: email, password: SessionIntegrationTests.password, userAgent: nil, context: context)
        }
    }
}

extension TestInfrastructure {
    static func withSession(of refreshToken: String, _ client: PostgresClient) async throws -> UUID {
        let rows = try await client.query("SELECT family_id FROM refresh_tokens WHERE token_hash = \(RefreshTokens.hash(refreshToken))", logger: logger)
        for try await id in rows.decode(UUID.self) { return id }
        throw Problem(.notFound, "no such refresh token")
    }

    static func userOfSession(_ session: UUID, _ client: PostgresClient) async throws -> UUID {
        let rows = try await client.query("SELECT user_id FROM sessions WHERE id = \(session)", logger: logger)
        for try await id in rows.decode(UUID.self) { return id }
        throw Problem(.notFound, "no such session")
    }
}

extension SessionIntegrationTests {
    /// The session revocations in the outbox, oldest first.
    static func revocations(_ client: PostgresClient) async throws -> [SessionsRevokedV1] {
        let rows = try await client.query("SELECT data FROM outbox WHERE type = \(EventTypes.sessionsRevoked) ORDER BY seq", logger: TestInfrastructure.logger)
        var events: [SessionsRevokedV1] = []
        for try await data in rows.decode(ByteBuffer.self) {
            events.append(try EventCoding.decoder.decode(SessionsRevokedV1.self, from: Data(buffer: data)))
        }
        return events
    }
}

extension AccountService {
    /// The service as identity builds it, with default policies and a random sealing key.
    static func forTests(client: PostgresClient, ring: SigningKeyRing, hasher: PasswordHasher = PasswordHasher(),
                         recovery: RecoveryThrottlePolicy = RecoveryThrottlePolicy()) -> AccountService {
        AccountService(client: client, keyRing: ring, hasher: hasher,
                       tokenSettings: TokenSettings(issuer: "marketplace-identity", audience: "marketplace"),
                       throttle: LoginThrottle(client: client, policy: LoginThrottlePolicy()),
                       recoveryThrottle: RecoveryThrottle(client: client, policy: recovery),
                       secrets: SecretSealer(key: SymmetricKey(size: .bits256)))
    }

    /// A password login that must sign in directly (no second factor enrolled).
    func passwordLogin(email: String, password: String, userAgent: String?, address: String? = nil, context: OperationContext) async throws -> TokenPair {
        switch try await login(email: email, password: password, userAgent: userAgent, address: address, context: context) {
        case .tokens(let pair): return pair
        case .mfaRequired: throw TestFailure("expected tokens, got an MFA challenge")
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
