import Contracts
import Crypto
import Foundation
import Logging
import Platform
import PostgresNIO
import Testing
@testable import Identity

/// Identity's account processes on real Postgres: verification and reset tokens (single use,
/// expiring), session revocation events, the two-step MFA login, administration and its audit log.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct AccountRecoveryIntegrationTests {
    let logger = TestInfrastructure.logger
    var context: OperationContext { .background(service: "identity", logger: logger) }
    static let password = "correct horse battery"

    struct Fixture: Sendable {
        var accounts: AccountService
        var client: PostgresClient
        var userId: UUID
        var email: String
    }

    func withAccount(recovery: RecoveryThrottlePolicy = RecoveryThrottlePolicy(), _ body: @Sendable (Fixture) async throws -> Void) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try IdentityService.allMigrations(), logger: logger).migrate()
                let ring = SigningKeyRing(client: client, sealingKey: SymmetricKey(size: .bits256), logger: logger)
                let accounts = AccountService.forTests(client: client, ring: ring, recovery: recovery)
                let email = "\(schema)@example.com"
                let user = try await accounts.register(
                    ValidRegistration(email: email, normalizedEmail: email, password: Self.password, displayName: "Ann", role: .buyer),
                    context: context)
                try await body(Fixture(accounts: accounts, client: client, userId: user.id, email: email))
            }
        }
    }

    /// The payloads of outbox events of `type`, oldest first.
    func events<Payload: Decodable>(_ type: String, as payload: Payload.Type, _ client: PostgresClient) async throws -> [Payload] {
        let rows = try await client.query("SELECT data FROM outbox WHERE type = \(type) ORDER BY seq", logger: logger)
        var payloads: [Payload] = []
        for try await data in rows.decode(ByteBuffer.self) {
            payloads.append(try EventCoding.decoder.decode(Payload.self, from: Data(buffer: data)))
        }
        return payloads
    }

    func lastToken(_ template: String, _ client: PostgresClient) async throws -> String {
        let notes = try await events(EventTypes.notificationRequested, as: NotificationRequestedV1.self, client).filter { $0.template == template }
        return try #require(notes.last?.data["token"])
    }

    func isInvalidToken(_ error: any Error) -> Bool {
        (error as? IdentityError) == .invalidEmailToken
    }

    @Test func verificationTokensAreSingleUseAndExpire() async throws {
        try await withAccount { fixture in
            let (accounts, client) = (fixture.accounts, fixture.client)
            let note = try #require(try await events(EventTypes.notificationRequested, as: NotificationRequestedV1.self, client).first)
            #expect(note.to == fixture.email && note.template == "email-verification" && note.userId == fixture.userId)
            let token = try #require(note.data["token"])
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM email_tokens WHERE token_hash = \(RefreshTokens.hash(token))") == 1,
                    "only the hash is stored")
            #expect(try await accounts.user(id: fixture.userId, context: context).emailVerified == false)
            try await accounts.verifyEmail(token: token, address: nil, context: context)
            #expect(try await accounts.user(id: fixture.userId, context: context).emailVerified)
            await #expect(throws: IdentityError.invalidEmailToken, "a used token") {
                try await accounts.verifyEmail(token: token, address: nil, context: context)
            }
            await #expect(throws: IdentityError.emailAlreadyVerified) {
                try await accounts.resendVerification(user: fixture.userId, address: nil, context: context)
            }
            // A fresh account's link, expired.
            try await client.query("UPDATE users SET email_verified = false WHERE id = \(fixture.userId)", logger: logger)
            try await accounts.resendVerification(user: fixture.userId, address: nil, context: context)
            let second = try await lastToken("email-verification", client)
            try await client.query("UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = \(RefreshTokens.hash(second))", logger: logger)
            await #expect(throws: IdentityError.invalidEmailToken, "an expired token") {
                try await accounts.verifyEmail(token: second, address: nil, context: context)
            }
            #expect(try await accounts.user(id: fixture.userId, context: context).emailVerified == false)
        }
    }

    @Test func aResetTokenSetsThePasswordOnceAndEndsEverySession() async throws {
        try await withAccount { fixture in
            let (accounts, client, email) = (fixture.accounts, fixture.client, fixture.email)
            let phone = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "phone", context: context)
            let laptop = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "laptop", context: context)

            try await accounts.requestPasswordReset(email: "nobody-\(email)", address: nil, context: context)
            #expect(try await events(EventTypes.notificationRequested, as: NotificationRequestedV1.self, client).filter { $0.template == "password-reset" }.isEmpty,
                    "an unknown address gets no mail (and the caller the same answer)")
            try await accounts.requestPasswordReset(email: email.uppercased(), address: nil, context: context)
            let token = try await lastToken("password-reset", client)
            let expiry = try await TestInfrastructure.scalar(client, "SELECT EXTRACT(EPOCH FROM expires_at - created_at)::bigint FROM email_tokens WHERE token_hash = \(RefreshTokens.hash(token))")
            #expect(expiry == 1800, "reset links live 30 minutes")

            let newPassword = "a completely new phrase"
            try await accounts.confirmPasswordReset(token: token, newPassword: newPassword, address: nil, context: context)
            await #expect(throws: IdentityError.invalidEmailToken, "single use") {
                try await accounts.confirmPasswordReset(token: token, newPassword: "yet another phrase here", address: nil, context: context)
            }
            for old in [phone, laptop] {
                await #expect(throws: IdentityError.self) { try await accounts.refresh(token: old.refreshToken, context: context) }
            }
            let revoked = try #require(try await events(EventTypes.sessionsRevoked, as: SessionsRevokedV1.self, client).last)
            #expect(revoked.userId == fixture.userId && revoked.reason == "password-reset" && revoked.keptSessionId == nil)
            #expect(Set(revoked.sessionIds).count == 2)
            await #expect(throws: IdentityError.invalidCredentials) {
                _ = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: nil, context: context)
            }
            _ = try await accounts.passwordLogin(email: email, password: newPassword, userAgent: nil, context: context)
            #expect(try await accounts.user(id: fixture.userId, context: context).emailVerified, "the reset link proved the address")

            // A newer request replaces the older link; an expired link does nothing.
            try await accounts.requestPasswordReset(email: email, address: nil, context: context)
            let older = try await lastToken("password-reset", client)
            try await accounts.requestPasswordReset(email: email, address: nil, context: context)
            let newer = try await lastToken("password-reset", client)
            await #expect(throws: IdentityError.invalidEmailToken, "superseded") {
                try await accounts.confirmPasswordReset(token: older, newPassword: "yet another phrase here", address: nil, context: context)
            }
            try await client.query("UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = \(RefreshTokens.hash(newer))", logger: logger)
            await #expect(throws: IdentityError.invalidEmailToken, "expired") {
                try await accounts.confirmPasswordReset(token: newer, newPassword: "yet another phrase here", address: nil, context: context)
            }
        }
    }

    @Test func passwordChangeKeepsTheCallersSessionOnly() async throws {
        try await withAccount { fixture in
            let (accounts, client, email) = (fixture.accounts, fixture.client, fixture.email)
            let here = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "here", context: context)
            let elsewhere = try await accounts.passwordLogin(email: email, password: Self.password, userAgent: "elsewhere", context: context)
            let session = try await TestInfrastructure.withSession(of: here.refreshToken, client)
            await #expect(throws: Problem.self, "the current password must be right") {
                try await accounts.changePassword(user: fixture.userId, session: session, current: "not the password", new: "a completely new phrase",
                                                  address: nil, context: context)
            }
            try await accounts.changePassword(user: fixture.userId, session: session, current: Self.password, new: "a completely new phrase",
                                              address: nil, context: context)
            _ = try await accounts.refresh(token: here.refreshToken, context: context)
            await #expect(throws: IdentityError.self) { try await accounts.refresh(token: elsewhere.refreshToken, context: context) }
            let revoked = try #require(try await events(EventTypes.sessionsRevoked, as: SessionsRevokedV1.self, client).last)
            #expect(revoked.keptSessionId == session && revoked.reason == "password-change" && !revoked.sessionIds.contains(session))
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM audit_log WHERE action = 'password.changed' AND target_id = \(fixture.userId)") == 1)
        }
    }

    @Test func ofTwoConcurrentChangesFromTheSamePasswordOnlyOneWins() async throws {
        try await withAccount { fixture in
            let (accounts, user) = (fixture.accounts, fixture.userId)
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for new in ["first new pass phrase", "second new pass phrase"] {
                    group.addTask {
                        do {
                            try await accounts.changePassword(user: user, session: nil, current: Self.password, new: new,
                                                              address: nil, context: .background(service: "identity", logger: TestInfrastructure.logger))
                            return true
                        } catch is Problem {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1, "the loser's current password went stale: \(outcomes)")
            #expect(try await TestInfrastructure.scalar(fixture.client, "SELECT count(*) FROM audit_log WHERE action = 'password.changed'") == 1)
            #expect(try await events(EventTypes.sessionsRevoked, as: SessionsRevokedV1.self, fixture.client).count == 1)
        }
    }

    @Test func resetRequestsAreThrottledPerAccount() async throws {
        var policy = RecoveryThrottlePolicy()
        policy.perAccount = 2
        try await withAccount(recovery: policy) { fixture in
            for _ in 0..<2 {
                try await fixture.accounts.requestPasswordReset(email: fixture.email, address: "10.0.0.1", context: context)
            }
            do {
                try await fixture.accounts.requestPasswordReset(email: fixture.email, address: "10.0.0.2", context: context)
                Issue.record("the third request in the window was accepted")
            } catch let problem as Problem {
                #expect(problem.kind == .rateLimited)
                let retry = try #require(problem.headers[.retryAfter].flatMap(Int.init))
                #expect((1...900).contains(retry))
            }
            // The window passes: requests are accepted again.
            try await fixture.client.query("UPDATE login_throttles SET window_started_at = now() - interval '16 minutes'", logger: logger)
            try await fixture.accounts.requestPasswordReset(email: fixture.email, address: "10.0.0.1", context: context)
        }
    }

    /// Enrols TOTP and returns the authenticator.
    func enrol(_ fixture: Fixture) async throws -> (Totp, [String]) {
        let sealer = fixture.accounts.secrets
        let enrolment = try await MultiFactor.enrol(user: fixture.userId, sealer: sealer, client: fixture.client, context: context)
        let totp = Totp(secret: try #require(Base32.decode(enrolment.secret)))
        #expect(enrolment.provisioningUri.hasPrefix("otpauth://totp/Marketplace:"))
        await #expect(throws: Problem.self, "a wrong first code") {
            _ = try await MultiFactor.confirm(user: fixture.userId, code: "000000" == totp.code(step: totp.step(at: Self.now)) ? "111111" : "000000",
                                              sealer: sealer, client: fixture.client, context: context)
        }
        let codes = try await MultiFactor.confirm(user: fixture.userId, code: totp.code(step: totp.step(at: Self.now)), sealer: sealer,
                                                  client: fixture.client, context: context)
        #expect(codes.recoveryCodes.count == 10)
        await #expect(throws: IdentityError.mfaAlreadyEnabled) {
            _ = try await MultiFactor.enrol(user: fixture.userId, sealer: sealer, client: fixture.client, context: context)
        }
        return (totp, codes.recoveryCodes)
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    func challenge(_ fixture: Fixture) async throws -> String {
        switch try await fixture.accounts.login(email: fixture.email, password: Self.password, userAgent: "app", context: context) {
        case .mfaRequired(let challenge): return challenge.mfaToken
        case .tokens: throw TestFailure("expected an MFA challenge")
        }
    }

    @Test func mfaLoginNeedsAFreshCodeOrAnUnusedRecoveryCode() async throws {
        try await withAccount { fixture in
            let accounts = fixture.accounts
            try await fixture.client.query("UPDATE users SET roles = ARRAY['buyer', 'admin'] WHERE id = \(fixture.userId)", logger: logger)
            let before = try await accounts.passwordLogin(email: fixture.email, password: Self.password, userAgent: nil, context: context)
            #expect(before.mfaEnrollmentRequired == true)
            let (totp, recovery) = try await enrol(fixture)

            // The code used to confirm enrolment cannot sign in: a code is good once.
            let replayed = try await challenge(fixture)
            await #expect(throws: IdentityError.invalidMfaCode) {
                _ = try await accounts.completeLogin(challenge: replayed, proof: .totp(totp.code(step: totp.step(at: Self.now))), context: context)
            }
            // Next step's code (within the drift window) is accepted; the challenge is then used up.
            let fresh = try await challenge(fixture)
            let next = totp.code(step: totp.step(at: Self.now) + 1)
            let pair = try await accounts.completeLogin(challenge: fresh, proof: .totp(next), context: context)
            let claims = try await verify(pair.accessToken, fixture)
            #expect(claims.roles == ["buyer", "admin"] && claims.amr == ["pwd", "otp"])
            #expect(pair.mfaEnrollmentRequired == false)
            await #expect(throws: IdentityError.invalidMfaChallenge) {
                _ = try await accounts.completeLogin(challenge: fresh, proof: .totp(next), context: context)
            }
            // Refreshing keeps the second-factor roles.
            #expect(try await verify(try await accounts.refresh(token: pair.refreshToken, context: context).accessToken, fixture).roles.contains("admin"))

            // Recovery codes work once each.
            let viaRecovery = try await challenge(fixture)
            _ = try await accounts.completeLogin(challenge: viaRecovery, proof: .recoveryCode(recovery[0].uppercased()), context: context)
            let again = try await challenge(fixture)
            await #expect(throws: IdentityError.invalidMfaCode) {
                _ = try await accounts.completeLogin(challenge: again, proof: .recoveryCode(recovery[0]), context: context)
            }
            // Five wrong codes use the challenge up.
            for _ in 0..<4 {
                await #expect(throws: IdentityError.invalidMfaCode) {
                    _ = try await accounts.completeLogin(challenge: again, proof: .recoveryCode("aaaaa-aaaaa"), context: context)
                }
            }
            await #expect(throws: IdentityError.invalidMfaChallenge) {
                _ = try await accounts.completeLogin(challenge: again, proof: .recoveryCode(recovery[1]), context: context)
            }
            #expect(try await TestInfrastructure.scalar(fixture.client, "SELECT count(*) FROM audit_log WHERE action = 'mfa.failed'") == 6)
        }
    }

    func verify(_ token: String, _ fixture: Fixture) async throws -> AccessTokenClaims {
        let verifier = AccessTokenVerifier(keys: KeyRingSource(ring: fixture.accounts.keyRing), issuer: "marketplace-identity", audience: "marketplace")
        return try await verifier.verify(token)
    }

    @Test func administrationIsAuditedAndTheLogIsAppendOnly() async throws {
        try await withAccount { fixture in
            let (accounts, client) = (fixture.accounts, fixture.client)
            let (adminId, created) = try await Administration.createAdmin(email: "root-\(fixture.email)", displayName: "Root", password: "an admin pass phrase",
                                                                         client: client, context: context)
            #expect(created)
            let administration = Administration(client: client)
            let session = try await accounts.passwordLogin(email: fixture.email, password: Self.password, userAgent: nil, context: context)

            let moderator = try await administration.setRoles(["buyer", "moderator"], of: fixture.userId, reason: "joins the team", actor: adminId,
                                                              context: { var request = context; request.requestId = "req-1"; return request }())
            #expect(moderator.roles == ["buyer", "moderator"])
            await #expect(throws: IdentityError.self, "a role change ends the sessions") { try await accounts.refresh(token: session.refreshToken, context: context) }
            await #expect(throws: Problem.self, "buyer and vendor are the user's choice") {
                _ = try await administration.setRoles(["vendor", "moderator"], of: fixture.userId, reason: "no", actor: adminId, context: context)
            }
            await #expect(throws: IdentityError.cannotDemoteSelf) {
                _ = try await administration.setRoles([], of: adminId, reason: "oops", actor: adminId, context: context)
            }
            await #expect(throws: IdentityError.cannotSuspendSelf) {
                _ = try await administration.suspend(adminId, reason: "oops", actor: adminId, context: context)
            }

            let suspended = try await administration.suspend(fixture.userId, reason: "spam", actor: adminId, context: context)
            #expect(suspended.status == "suspended")
            _ = try await administration.suspend(fixture.userId, reason: "spam again", actor: adminId, context: context)
            await #expect(throws: IdentityError.accountSuspended) {
                _ = try await accounts.passwordLogin(email: fixture.email, password: Self.password, userAgent: nil, context: context)
            }
            #expect(try await events(EventTypes.userSuspended, as: UserStatusChangedV1.self, client).count == 1, "repeating a suspension emits nothing")
            #expect(try await events(EventTypes.sessionsRevoked, as: SessionsRevokedV1.self, client).map(\.reason) == ["role-changed", "suspended"])
            _ = try await administration.reinstate(fixture.userId, reason: "appeal upheld", actor: adminId, context: context)
            _ = try await accounts.passwordLogin(email: fixture.email, password: Self.password, userAgent: nil, context: context)

            let byAdmin = AuditLog.Filter(actorId: adminId, targetId: nil, action: nil)
            func auditPage(limit: Int, cursor: String?, _ filter: AuditLog.Filter) throws -> KeysetPageRequest {
                try KeysetPageRequest(limit: limit, cursor: cursor, order: AuditLog.newestFirst, binding: AuditLog.binding(filter))
            }
            let page = try await AuditLog.page(byAdmin, try auditPage(limit: 2, cursor: nil, byAdmin), client: client, context: context)
            #expect(page.items.map(\.action) == ["user.reinstated", "user.suspended"])
            #expect(page.items.first?.reason == "appeal upheld")
            let rest = try await AuditLog.page(byAdmin, try auditPage(limit: 10, cursor: page.nextCursor, byAdmin), client: client, context: context)
            #expect(throws: Problem.self, "the cursor is bound to the actor filter it came from") {
                _ = try auditPage(limit: 10, cursor: page.nextCursor, AuditLog.Filter(actorId: fixture.userId, targetId: nil, action: nil))
            }
            #expect(rest.items.map(\.action) == ["user.roles_changed"] && rest.nextCursor == nil)
            #expect(rest.items.first?.details == ["from": "buyer", "to": "buyer moderator"] && rest.items.first?.requestId == "req-1")

            await #expect(throws: (any Error).self, "entries cannot be changed") {
                try await client.query("UPDATE audit_log SET reason = 'edited'", logger: logger)
            }
            await #expect(throws: (any Error).self, "entries cannot be deleted") {
                try await client.query("DELETE FROM audit_log", logger: logger)
            }

            func firstPage(_ filter: Administration.UserFilter) async throws -> Page<UserView> {
                try await administration.users(filter, try KeysetPageRequest(limit: 10, cursor: nil, order: Administration.newestFirst,
                                                                             binding: Administration.binding(filter)), context: context)
            }
            let staff = try await firstPage(Administration.UserFilter(role: "moderator", status: nil, emailPrefix: nil))
            #expect(staff.items.map(\.id) == [fixture.userId])
            let byEmail = try await firstPage(Administration.UserFilter(role: nil, status: "active", emailPrefix: "root-"))
            #expect(byEmail.items.map(\.id) == [adminId])
            let none = try await firstPage(Administration.UserFilter(role: nil, status: nil, emailPrefix: "root_%"))
            #expect(none.items.isEmpty, "LIKE wildcards in the filter are literal")
        }
    }

    @Test func identityHousekeepingDropsOnlyExpiredSecurityRecords() async throws {
        try await withAccount { fixture async throws in
            let client = fixture.client
            try await client.query("""
                INSERT INTO login_throttles (key, updated_at) VALUES ('ip:old', now() - interval '2 days'), ('ip:recent', now())
                """, logger: logger)
            try await client.query("""
                INSERT INTO mfa_challenges (token_hash, user_id, expires_at) VALUES
                    ('\\x01', \(fixture.userId), now() - interval '2 hours'), ('\\x02', \(fixture.userId), now() + interval '5 minutes')
                """, logger: logger)
            try await client.query("""
                INSERT INTO exports (id, user_id, expires_at) VALUES
                    (gen_random_uuid(), \(fixture.userId), now() - interval '1 minute'), (gen_random_uuid(), \(fixture.userId), now() + interval '1 day')
                """, logger: logger)
            let housekeeping = IdentityService.housekeeping
            #expect(housekeeping.kinds == ["recurring:prune-exports", "recurring:prune-login-throttles", "recurring:prune-mfa-challenges"])
            try await Database.transaction(client, context) { transaction in
                for kind in housekeeping.kinds {
                    try await housekeeping.perform(recurring: String(kind.dropFirst("recurring:".count)), in: transaction)
                }
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM login_throttles WHERE key = 'ip:recent'") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM login_throttles") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM mfa_challenges") == 1, "the live challenge stays")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM exports WHERE expires_at > now()") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM exports") == 1, "the expired export goes")
        }
    }
}
