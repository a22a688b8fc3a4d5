import Contracts
import Crypto
import Foundation
import Logging
import Platform
import PostgresNIO
import Testing
@testable import Identity

/// Identity's side of export and erasure on real Postgres: obligations block erasure, identity's
/// own data is anonymised at once, participants' answers complete the export and the erasure once.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct PrivacyIntegrationTests {
    let logger = TestInfrastructure.logger
    var context: OperationContext { .background(service: "identity", logger: logger) }
    let recovery = AccountRecoveryIntegrationTests()

    func inTransaction(_ client: PostgresClient, _ body: @Sendable (Transaction) async throws -> Void) async throws {
        try await Database.transaction(client, context) { transaction in try await body(transaction) }
    }

    @Test func erasureIsRefusedWhileObligationsAreOpenThenAnonymisesAndCompletesOnce() async throws {
        try await recovery.withAccount { fixture in
            let (accounts, client, user) = (fixture.accounts, fixture.client, fixture.userId)
            _ = try await accounts.passwordLogin(email: fixture.email, password: AccountRecoveryIntegrationTests.password, userAgent: "phone", context: context)
            try await AuditLog.record(.suspended, actor: nil, target: user, reason: "spam from Ann Smith", client: client, context: context)
            try await client.query("INSERT INTO user_obligations (kind, reference, user_id) VALUES ('order', \(UUID.v7()), \(user)), ('order', \(UUID.v7()), \(user))", logger: logger)
            await #expect(throws: IdentityError.erasureBlocked(["2 open orders"])) {
                try await accounts.requestErasure(user: user, password: AccountRecoveryIntegrationTests.password, proof: nil, address: nil,
                                                  context: context)
            }
            try await client.query("DELETE FROM user_obligations", logger: logger)
            await #expect(throws: Problem.self, "the password again") {
                try await accounts.requestErasure(user: user, password: "not the password", proof: nil, address: nil, context: context)
            }
            try await accounts.requestErasure(user: user, password: AccountRecoveryIntegrationTests.password, proof: nil, address: nil,
                                              context: context)

            let view = try await Administration(client: client).user(user, context: context)
            #expect(view.status == "erased" && view.displayName == "Deleted user" && view.email.hasSuffix("@erased.invalid"))
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM credentials WHERE user_id = \(user)") == 0)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM audit_log WHERE target_id = \(user) AND reason IS NOT NULL") == 0,
                    "free text about the user is gone")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM audit_log WHERE target_id = \(user)") >= 3, "the entries stay")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM sessions WHERE user_id = \(user) AND (revoked_at IS NULL OR user_agent IS NOT NULL)") == 0)
            await #expect(throws: IdentityError.invalidCredentials) {
                _ = try await accounts.passwordLogin(email: fixture.email, password: AccountRecoveryIntegrationTests.password, userAgent: nil, context: context)
            }
            #expect(try await recovery.events(EventTypes.userErasureRequested, as: UserErasureV1.self, client).map(\.userId) == [user])

            // Each participant acknowledges (one twice): `user.erased` once, after the last.
            for (index, service) in (Topics.privacyParticipants + ["listings"]).enumerated() {
                try await inTransaction(client) { transaction in
                    try await Privacy.acknowledge(UserErasureCompletedV1(userId: user, service: service, completedAt: Date()), in: transaction)
                }
                let erased = try await recovery.events(EventTypes.userErased, as: UserErasureV1.self, client)
                #expect(erased.count == (index >= Topics.privacyParticipants.count - 1 ? 1 : 0), "after \(service)")
            }
            // The address is free again.
            _ = try await accounts.register(ValidRegistration(email: fixture.email, normalizedEmail: fixture.email, password: AccountRecoveryIntegrationTests.password,
                                                              displayName: "Ann again", role: .buyer), context: context)
        }
    }

    @Test func anExportCollectsEveryParticipantsPartOnce() async throws {
        try await recovery.withAccount { fixture in
            let (client, user) = (fixture.client, fixture.userId)
            let started = try await Exports.request(user: user, client: client, context: context)
            #expect(started.status == "pending" && started.pendingServices == Topics.privacyParticipants)
            let asked = try #require(try await recovery.events(EventTypes.userExportRequested, as: UserExportRequestedV1.self, client).last)
            #expect(asked.exportId == started.id && asked.userId == user)
            await #expect(throws: IdentityError.exportNotFound, "another user's export") {
                _ = try await Exports.view(started.id, user: UUID.v7(), client: client, context: context)
            }
            for service in Topics.privacyParticipants + ["orders", "somebody-else"] {
                try await inTransaction(client) { transaction in
                    try await Exports.receive(UserExportPartV1(exportId: started.id, userId: user, service: service, data: "{\"service\": \"\(service)\"}"),
                                              in: transaction)
                }
            }
            let ready = try await Exports.view(started.id, user: user, client: client, context: context)
            #expect(ready.status == "ready" && ready.pendingServices.isEmpty)
            #expect(Set(ready.parts?.keys ?? [:].keys) == Set(["identity"] + Topics.privacyParticipants))
            #expect(ready.parts?["orders"] == .object(["service": .string("orders")]))
            guard case .object(let identity) = ready.parts?["identity"], case .object(let account) = identity["account"] else {
                Issue.record("identity's part is missing its account")
                return
            }
            #expect(account["email"] == .string(fixture.email))
            try await client.query("UPDATE exports SET expires_at = now() - interval '1 second'", logger: logger)
            await #expect(throws: IdentityError.exportNotFound, "expired") {
                _ = try await Exports.view(started.id, user: user, client: client, context: context)
            }
        }
    }

    @Test func partsArrivingTogetherStillCompleteTheExport() async throws {
        try await recovery.withAccount { fixture in
            let (client, user) = (fixture.client, fixture.userId)
            let started = try await Exports.request(user: user, client: client, context: context)
            let services = Topics.privacyParticipants
            let part = { @Sendable (service: String) in UserExportPartV1(exportId: started.id, userId: user, service: service, data: "{}") }
            for service in services.dropLast(2) {
                try await inTransaction(client) { transaction in try await Exports.receive(part(service), in: transaction) }
            }
            let (received, receivedSignal) = AsyncStream<Void>.makeStream()
            let (mayCommit, commitSignal) = AsyncStream<Void>.makeStream()
            async let first: Void = inTransaction(client) { transaction in
                try await Exports.receive(part(services[services.count - 2]), in: transaction)
                receivedSignal.yield()
                for await _ in mayCommit { break }
            }
            for await _ in received { break }
            // The last part is handled while the one before is still uncommitted, as on two
            // partitions or two replicas; neither transaction may conclude a part is missing.
            async let second: Void = inTransaction(client) { transaction in try await Exports.receive(part(services[services.count - 1]), in: transaction) }
            try await Task.sleep(for: .milliseconds(200))
            commitSignal.yield()
            try await first
            try await second
            let view = try await Exports.view(started.id, user: user, client: client, context: context)
            #expect(view.status == "ready" && view.pendingServices.isEmpty)
        }
    }
}
