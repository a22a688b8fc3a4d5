import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Identity
import Listings
import Logging
import NIOCore
import Platform
import PostgresNIO
import Testing

/// A service's routes run in process (`HummingbirdTesting`, no sockets, no Kafka) against a real
/// Postgres: the same router `serve` builds, with the service's own migrations in a fresh schema.
/// This is how route tests are written here (see Shared/Platform/README.md).
enum InProcess {
    /// Runs `body` with a test client for `Module`'s router over a fresh, migrated schema.
    static func withService<Module: ServiceModule>(
        _ module: Module.Type, config extra: [String: String] = [:], keys: (@Sendable (Module) -> any VerificationKeySource)? = nil,
        _ body: @Sendable (any TestClientProtocol, PostgresClient) async throws -> Void
    ) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                let logger = TestInfrastructure.logger
                try await Migrator(client: client, schema: schema, migrations: try Module.allMigrations(), logger: logger).migrate()
                let config = ConfigReader(values: ["DATABASE_URL": TestInfrastructure.databaseURL!].merging(extra) { $1 })
                let settings = try ServiceSettings(serviceName: Module.name, defaultPort: Module.defaultPort, reader: config)
                let dependencies = ServiceDependencies(settings: settings, config: config, postgres: client, logger: logger)
                let service = try Module(dependencies: dependencies)
                let source = keys?(service) ?? service.verificationKeys ?? StaticKeySource([:])
                let verifier = AccessTokenVerifier(keys: source, issuer: settings.tokenIssuer, audience: settings.tokenAudience)
                let router = ServiceRuntime<Module>.buildRouter(module: service, dependencies: dependencies, verifier: verifier)
                try await Application(router: router, logger: logger).test(.router) { client_ in try await body(client_, client) }
            }
        }
    }

    static func json(_ object: [String: Any]) -> ByteBuffer {
        ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
    }

    static func object(_ body: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])
    }
}

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct IdentityRouteTests {
    static var registration: [String: Any] { ["email": "ann@example.com", "password": "correct horse battery", "displayName": "Ann", "role": "buyer"] }

    @Test func registrationAnswers201WithTheAccountAndADuplicateIs409() async throws {
        try await InProcess.withService(IdentityService.self) { client, _ async throws in
            try await client.execute(uri: "/v1/auth/register", method: .post, headers: [.contentType: "application/json"],
                                     body: InProcess.json(Self.registration)) { response async throws in
                #expect(response.status == .created)
                let user = try InProcess.object(response.body)
                let id = try #require(user["id"] as? String)
                #expect(id == id.lowercased() && response.headers[.location] == "/v1/users/\(id)")
                #expect(user["businessProfile"] is NSNull, "absent values are explicit nulls")
                #expect(user["emailVerified"] as? Bool == false && user["roles"] as? [String] == ["buyer"])
            }
            try await client.execute(uri: "/v1/auth/register", method: .post, headers: [.contentType: "application/json"],
                                     body: InProcess.json(Self.registration)) { response async throws in
                #expect(response.status == .conflict)
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(try InProcess.object(response.body)["type"] as? String == "https://marketplace.example/problems/email-taken")
            }
        }
    }

    @Test func badInputIsAProblemNamingEveryField() async throws {
        try await InProcess.withService(IdentityService.self) { client, _ async throws in
            try await client.execute(uri: "/v1/auth/register", method: .post, headers: [.contentType: "application/json"],
                                     body: InProcess.json(["email": "not-an-email", "password": "x", "role": "admin"])) { response async throws in
                #expect(response.status == .unprocessableContent)
                let problem = try InProcess.object(response.body)
                let fields = Set((problem["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String })
                #expect(fields.isSuperset(of: ["email", "password", "displayName", "role"]), "\(fields)")
                #expect(problem["requestId"] as? String == response.headers[.requestId] && problem["instance"] as? String == "/v1/auth/register")
            }
            try await client.execute(uri: "/v1/auth/login", method: .post, body: ByteBuffer(string: "{not json")) { response async throws in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test func aSignedInCallerReadsItsAccountAndNobodyElseDoes() async throws {
        try await InProcess.withService(IdentityService.self) { client, _ async throws in
            _ = try await client.execute(uri: "/v1/auth/register", method: .post, body: InProcess.json(Self.registration))
            let token = try await client.execute(uri: "/v1/auth/login", method: .post,
                                                 body: InProcess.json(["email": "ann@example.com", "password": "correct horse battery"])) { response async throws in
                #expect(response.status == .ok)
                let pair = try InProcess.object(response.body)
                #expect(pair["mfaEnrollmentRequired"] as? Bool == false)
                return try #require(pair["accessToken"] as? String)
            }
            try await client.execute(uri: "/v1/users/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { response async throws in
                #expect(response.status == .ok)
                #expect(try InProcess.object(response.body)["email"] as? String == "ann@example.com")
            }
            try await client.execute(uri: "/v1/users/me", method: .get) { response async throws in
                #expect(response.status == .unauthorized && response.headers[.wwwAuthenticate] == "Bearer")
            }
            try await client.execute(uri: "/v1/users/me", method: .get, headers: [.authorization: "Bearer \(token)x"]) { response async throws in
                #expect(response.status == .unauthorized)
            }
            // The admin group's gate: signed in, but no admin role (let alone a second factor).
            try await client.execute(uri: "/v1/admin/users", method: .get, headers: [.authorization: "Bearer \(token)"]) { response async throws in
                #expect(response.status == .forbidden)
            }
        }
    }

    @Test func aKnownPathAskedWithAnotherMethodIs405WithAllow() async throws {
        try await InProcess.withService(IdentityService.self) { client, _ async throws in
            try await client.execute(uri: "/v1/users/me", method: .put) { response async throws in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "DELETE, GET, HEAD")
                #expect(try InProcess.object(response.body)["type"] as? String == "https://marketplace.example/problems/method-not-allowed")
            }
            try await client.execute(uri: "/v1/sessions/0192f1a0-0000-7000-8000-000000000001", method: .post) { response async throws in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "DELETE")
            }
            try await client.execute(uri: "/v1/no-such-thing", method: .put) { response async throws in
                #expect(response.status == .notFound, "an unknown path stays 404")
            }
            try await client.execute(uri: "/health/live", method: .head) { response async throws in
                #expect(response.status == .ok, "HEAD is served wherever GET is")
            }
        }
    }

    @Test func theTestClockMovesBusinessTimeOnlyWhenEnabled() async throws {
        try await InProcess.withService(IdentityService.self) { client, _ async throws in
            try await client.execute(uri: "/internal/test-clock", method: .get) { response async throws in
                #expect(response.status == .notFound, "off unless TEST_CLOCK=on")
            }
        }
        try await InProcess.withService(IdentityService.self, config: ["TEST_CLOCK": "on"]) { client, postgres async throws in
            try await client.execute(uri: "/internal/test-clock", method: .post, body: InProcess.json(["advanceSeconds": 86_400])) { response async throws in
                #expect(response.status == .ok)
                let state = try InProcess.object(response.body)
                #expect(state["offsetSeconds"] as? Double == 86_400)
                let now = try #require(EventCoding.parseTime(state["now"] as? String ?? ""))
                #expect(abs(now.timeIntervalSinceNow - 86_400) < 60)
            }
            try await client.execute(uri: "/internal/test-clock", method: .post, body: InProcess.json(["advanceSeconds": -5])) { response async throws in
                #expect(response.status == .unprocessableContent, "never backwards")
            }
            #expect(try await TestInfrastructure.scalar(postgres, "SELECT offset_ms FROM business_clock") == 86_400_000, "kept for a restart")
        }
    }
}

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct PublicReadRouteTests {
    @Test func publicReadsCarryAnETagAndAnswer304WhileItMatches() async throws {
        try await InProcess.withService(ListingsService.self) { client, _ async throws in
            let etag = try await client.execute(uri: "/v1/categories", method: .get) { response async throws in
                #expect(response.status == .ok)
                #expect(response.headers[.cacheControl] == "public, max-age=60")
                let slugs = (try InProcess.object(response.body)["items"] as? [[String: Any]])?.compactMap { $0["slug"] as? String }
                #expect(slugs == ["dogs", "cats", "birds", "small-animals", "pet-supplies", "pet-food", "cages-and-carriers"],
                        "five at the top, two below pet supplies, in display order")
                return try #require(response.headers[.eTag])
            }
            try await client.execute(uri: "/v1/categories", method: .get, headers: [.ifNoneMatch: etag]) { response async throws in
                #expect(response.status == .notModified && response.body.readableBytes == 0 && response.headers[.eTag] == etag)
            }
            try await client.execute(uri: "/v1/categories", method: .get, headers: [.ifNoneMatch: "W/\"stale\""]) { response async throws in
                #expect(response.status == .ok)
            }
        }
    }
}
