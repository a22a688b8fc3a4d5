import Foundation
import Kafka
import Logging
import NIOConcurrencyHelpers
import Platform
import PostgresNIO
import Testing

/// The real Postgres and dev broker that `make test` starts and describes in the environment.
enum TestInfrastructure {
    static let environment = ProcessInfo.processInfo.environment
    static var databaseURL: String? { environment["TEST_DATABASE_URL"] }
    static var kafka: String? { environment["TEST_KAFKA_BOOTSTRAP_SERVERS"] ?? environment["KAFKA_BOOTSTRAP_SERVERS"] }
    static var available: Bool { databaseURL != nil && kafka != nil }
    /// The dev mail catcher: its SMTP port and its HTTP API (Mailpit's).
    static var smtpURL: String? {
        environment["TEST_SMTP_PORT"].map { "smtp://\(environment["TEST_SMTP_HOST"] ?? "127.0.0.1"):\($0)" }
    }
    static var mailURL: String? { environment["TEST_MAIL_URL"] }
    static var mailAvailable: Bool { smtpURL != nil && mailURL != nil }

    static let logger: Logger = {
        var logger = Logger(label: "integration")
        logger.logLevel = environment["TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        return logger
    }()

    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// A pooled client (as `url`'s role) whose connections use `schema`, running for `body`'s duration.
    static func withPostgres<T: Sendable>(url: String? = nil, schema: String? = nil, _ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let settings = try DatabaseSettings(url: url ?? databaseURL!)
        var configuration = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database, tls: .disable)
        if let schema { configuration.options.additionalStartupParameters = [("search_path", schema)] }
        configuration.options.maximumConnections = 8
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group async throws in
            group.addTask {
                await client.run()
                return nil
            }
            do {
                let result = try await body(client)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    /// A fresh schema with the platform's tables and an `effects` table handlers write to.
    static func makeSchema(_ client: PostgresClient) async throws -> String {
        let schema = uniqueName("it")
        try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"), logger: logger)
        return schema
    }

    static let effectsMigration = Migration(id: "0001_effects", sql: """
        CREATE TABLE effects (id bigserial PRIMARY KEY, event_id text NOT NULL, aggregate text, sequence int);
        """)

    /// An inbox of a test service, on the wall clock.
    static func inbox(_ client: PostgresClient, handlers: EventHandlers, service: String = "tests") -> Inbox {
        Inbox(client: client, handlers: handlers, service: service, clock: BusinessClock())
    }

    /// A background operation for calling domain code directly.
    static func context(_ service: String = "tests") -> OperationContext {
        .background(service: service, logger: logger)
    }

    static func kafkaConfiguration(_ clientId: String) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: kafka!, clientId: clientId, properties: MockKafkaCluster.fastRejoinConsumerProperties)
    }

    static func scalar(_ client: PostgresClient, _ query: PostgresQuery) async throws -> Int64 {
        let rows = try await client.query(query, logger: logger)
        for try await value in rows.decode(Int64.self) { return value }
        return 0
    }

    /// Polls `condition` until it holds or `timeout` passes; returns whether it held.
    static func eventually(timeout: Duration = .seconds(30), _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }
}

/// Without the infrastructure the integration suite would silently prove nothing, so under CI
/// its absence is a failure rather than a skip.
@Test func infrastructureIsProvidedUnderCI() {
    if ProcessInfo.processInfo.environment["CI"] != nil {
        #expect(TestInfrastructure.available, "TEST_DATABASE_URL and TEST_KAFKA_BOOTSTRAP_SERVERS must be set (run through make test)")
    }
}
