import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Kafka
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Prometheus
import ServiceLifecycle

/// What the runtime hands a service when it starts.
public struct ServiceDependencies: Sendable {
    public var settings: ServiceSettings
    public var config: ConfigReader
    public var postgres: PostgresClient
    public var httpClient: HTTPClient
    public var logger: Logger
    /// Business time: the wall clock, or the test clock with `TEST_CLOCK=on`.
    public var clock: BusinessClock

    public init(settings: ServiceSettings, config: ConfigReader, postgres: PostgresClient, httpClient: HTTPClient = .shared,
                logger: Logger, clock: BusinessClock = BusinessClock()) {
        self.settings = settings
        self.config = config
        self.postgres = postgres
        self.httpClient = httpClient
        self.logger = logger
        self.clock = clock
    }

    /// A background operation of this service (a command, a startup task).
    public func operation() -> OperationContext {
        OperationContext.background(service: settings.serviceName, logger: logger, clock: clock)
    }
}

/// A service of the suite, as the shared runtime sees it: its name and port, its migrations,
/// its routes, the topics it consumes and what it does with each event type, its jobs.
public protocol ServiceModule: Sendable {
    static var name: String { get }
    static var defaultPort: Int { get }
    /// The service's own numbered migrations (the platform's tables are prepended by the runtime).
    static func migrations() throws -> [Migration]
    static var consumedTopics: [String] { get }

    init(dependencies: ServiceDependencies) throws
    func addRoutes(to router: ServiceRouter)
    var eventHandlers: EventHandlers { get }
    /// The service's job kinds and recurring schedules (the platform's housekeeping is added).
    var jobHandlers: JobHandlers { get }
    /// Where tokens are verified from; nil means identity's JWKS at `JWKS_URL`.
    var verificationKeys: (any VerificationKeySource)? { get }
    /// Long-running work of the service besides HTTP, the relay, the consumer and the job runner.
    var backgroundServices: [any Service] { get }
    /// What else must be true before the service takes traffic (a read model loaded, say).
    var readinessChecks: [ReadinessCheck] { get }
}

extension ServiceModule {
    public static var consumedTopics: [String] { [] }
    public var eventHandlers: EventHandlers { EventHandlers() }
    public var jobHandlers: JobHandlers { JobHandlers() }
    public var verificationKeys: (any VerificationKeySource)? { nil }
    public var backgroundServices: [any Service] { [] }
    public var readinessChecks: [ReadinessCheck] { [] }

    public static func allMigrations() throws -> MigrationSet {
        MigrationSet(PlatformMigrations.all + (try migrations()))
    }

    /// Loads the service's `Migrations` resource folder.
    public static func migrations(in bundle: Bundle) throws -> [Migration] {
        guard let url = bundle.url(forResource: "Migrations", withExtension: nil) else {
            throw MigrationError.unreadableDirectory("Migrations (resource bundle of \(name))")
        }
        return try MigrationSet.load(directory: url)
    }
}

/// Starts, migrates and maintains a service: the same code path for production and tests.
public enum ServiceRuntime<Module: ServiceModule> {
    public static func settings(_ reader: ConfigReader) throws -> ServiceSettings {
        try ServiceSettings(serviceName: Module.name, defaultPort: Module.defaultPort, reader: reader)
    }

    public static func kafkaConfiguration(_ settings: ServiceSettings, clientSuffix: String = "", consumer: Bool = false) -> KafkaConfiguration {
        KafkaConfiguration(bootstrapServers: settings.kafkaBootstrapServers, clientId: Module.name + clientSuffix,
                           properties: settings.kafkaSecurity.librdkafkaProperties
                               .merging(consumer ? settings.kafkaConsumerProperties : [:]) { _, consumer in consumer })
    }

    /// The service's HTTP surface: the shared middleware, health and metrics, the test clock when
    /// enabled, and the module's routes. It needs Postgres and a token verifier, not Kafka, so tests
    /// run a service's routes in process (`HummingbirdTesting`) against a real database.
    public static func buildRouter(module: Module, dependencies: ServiceDependencies, verifier: AccessTokenVerifier,
                                   readiness: [ReadinessCheck] = [], registry: PrometheusCollectorRegistry? = nil) -> Router<AppRequestContext> {
        let router = Router(context: AppRequestContext.self, options: .autoGenerateHeadEndpoints)
        let book = RouteBook()
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: RequestIdMiddleware(service: ServiceIdentity(name: Module.name, clock: dependencies.clock)))
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: MethodNotAllowedMiddleware(book: book))
        router.add(middleware: AuthenticationMiddleware(verifier: verifier))
        let routes = ServiceRouter(router, book: book)
        HealthEndpoints.add(to: routes, checks: readiness)
        if let registry { MetricsEndpoint.add(to: routes, registry: registry) }
        if dependencies.settings.testClock {
            TestClock(client: dependencies.postgres, clock: dependencies.clock).addRoutes(to: routes, bodyLimit: dependencies.settings.maxBodyBytes)
        }
        module.addRoutes(to: routes)
        return router
    }

    /// Every job the service runs: its own and the platform's housekeeping.
    public static func jobHandlers(of module: Module) -> JobHandlers {
        var handlers = Jobs.housekeeping()
        handlers.merge(module.jobHandlers)
        return handlers
    }

    /// Builds the application; `serve` runs it, tests may run it in-process.
    public static func buildApplication(reader: ConfigReader, logger: Logger) async throws -> some ApplicationProtocol {
        let settings = try settings(reader)
        guard let database = settings.database else { throw ConfigError.missing(key: "DATABASE_URL") }
        let registry = MetricsSetup.bootstrap()
        let postgres = database.makeClient(logger: logger)
        let producer = try KafkaProducer(configuration: kafkaConfiguration(settings), logger: logger)
        let httpClient = HTTPClient.shared
        let clock = BusinessClock()
        let dependencies = ServiceDependencies(
            settings: settings, config: reader, postgres: postgres, httpClient: httpClient, logger: logger, clock: clock)
        let module = try Module(dependencies: dependencies)
        let keys = module.verificationKeys ?? RemoteKeySource(url: settings.jwksURL, httpClient: httpClient, logger: logger)
        let verifier = AccessTokenVerifier(keys: keys, issuer: settings.tokenIssuer, audience: settings.tokenAudience, cache: VerifiedTokenCache())
        let migrator = Migrator(client: postgres, schema: Module.name, migrations: try Module.allMigrations(), logger: logger)
        let router = buildRouter(module: module, dependencies: dependencies, verifier: verifier,
                                 readiness: [.postgres(postgres, logger: logger), .migrations(migrator), .kafka(producer)] + module.readinessChecks,
                                 registry: registry)

        var services: [any Service] = [postgres, producer]
        if settings.testClock {
            logger.warning("TEST_CLOCK=on: the business clock can be moved with POST /internal/test-clock (never in production)")
            // Loaded before the first request or job, so nothing runs on the wall clock by mistake.
            let loader = database.makeClient(logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await loader.run() }
                defer { group.cancelAll() }
                do {
                    try await TestClock(client: loader, clock: clock).load(logger: logger)
                } catch {
                    throw StartupFailure("the test clock's offset could not be read (are the migrations applied?): \(String(reflecting: error))")
                }
            }
        }
        services.append(OutboxRelay(client: postgres, publisher: producer, schema: Module.name, pollInterval: settings.outboxPollInterval, logger: logger))
        if !Module.consumedTopics.isEmpty {
            let consumerConfiguration = kafkaConfiguration(settings, clientSuffix: "-consumer", consumer: true)
            let consumer = try KafkaConsumer(configuration: consumerConfiguration, groupId: Module.name, topics: Module.consumedTopics, logger: logger)
            services.append(EventConsumerService(
                consumer: consumer, producer: producer,
                inbox: Inbox(client: postgres, handlers: module.eventHandlers, service: Module.name, clock: clock),
                service: Module.name, maxAttempts: settings.consumerMaxAttempts, backoff: settings.consumerRetryBackoff,
                batchSize: settings.consumerBatchSize, logger: logger))
        }
        services.append(JobRunner(client: postgres, handlers: jobHandlers(of: module), service: Module.name, clock: clock,
                                  concurrency: settings.jobConcurrency, batchSize: settings.jobBatchSize,
                                  pollInterval: settings.jobPollInterval, gather: .milliseconds(settings.jobGatherMilliseconds), logger: logger))
        services.append(DatabasePoolMetrics(client: postgres, settings: database, logger: logger))
        services.append(contentsOf: module.backgroundServices)
        return Application(
            router: router,
            configuration: .init(address: .hostname(settings.httpHost, port: settings.httpPort), serverName: nil),
            services: services,
            onServerRunning: { _ in logger.info("serving", metadata: ["http.port": "\(settings.httpPort)"]) },
            logger: logger)
    }

    public static func serve() async throws {
        let reader = try ConfigReader()
        LoggingSetup.bootstrap(service: Module.name, reader: reader)
        let logger = Logger(label: Module.name)
        let settings = try settings(reader)
        let app = try await buildApplication(reader: reader, logger: logger)
        var configuration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = settings.shutdownGracePeriod
        try await ServiceGroup(configuration: configuration).run()
    }

    /// Applies pending migrations and exits; safe to run concurrently and repeatedly.
    public static func migrate() async throws {
        try await withDatabase { client, _, logger in
            let applied = try await Migrator(client: client, schema: Module.name, migrations: try Module.allMigrations(), logger: logger).migrate()
            logger.info("migrations complete", metadata: ["applied": "\(applied.count)"])
        }
    }

    /// Runs `body` with a running client for the service's database, for one-off commands.
    public static func withDatabase<T: Sendable>(_ body: @Sendable (PostgresClient, ConfigReader, Logger) async throws -> T) async throws -> T {
        let reader = try ConfigReader()
        LoggingSetup.bootstrap(service: Module.name, reader: reader)
        let logger = Logger(label: Module.name)
        let database = try ServiceSettings.database(serviceName: Module.name, reader: reader)
        let client = database.makeClient(logger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            // The pool retries a failing connection forever; a one-off command (a migration Job)
            // should fail instead, so its Job retries and an operator sees why.
            let deadline = try reader.duration(milliseconds: "DATABASE_CONNECT_DEADLINE_MS", default: 30_000)
            try await Self.firstConnection(client, database: database, within: deadline, logger: logger)
            return try await body(client, reader, logger)
        }
    }

    static func firstConnection(_ client: PostgresClient, database: DatabaseSettings, within deadline: Duration, logger: Logger) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { probe in
            probe.addTask {
                try await client.query("SELECT 1", logger: logger)
                return true
            }
            probe.addTask {
                try await Task.sleep(for: deadline)
                return false
            }
            defer { probe.cancelAll() }
            guard try await probe.next() == true else { throw DatabaseUnreachable(database: database, waited: deadline) }
        }
    }

    /// Moves dead-lettered messages back to the topics they came from, for a fresh try.
    public static func redrive(idle: Duration, limit: Int?) async throws {
        let reader = try ConfigReader()
        LoggingSetup.bootstrap(service: Module.name, reader: reader)
        let logger = Logger(label: Module.name)
        let settings = try settings(reader)
        let producer = try KafkaProducer(configuration: kafkaConfiguration(settings, clientSuffix: "-redrive"), logger: logger)
        let consumer = try KafkaConsumer(
            configuration: kafkaConfiguration(settings, clientSuffix: "-redrive", consumer: true),
            groupId: "\(Module.name).dlq-redrive", topics: [DeadLetters.topic(for: Module.name)], logger: logger)
        let count = try await DeadLetterRedrive(consumer: consumer, producer: producer, topic: DeadLetters.topic(for: Module.name), logger: logger)
            .run(idle: idle, limit: limit)
        logger.info("redrive complete", metadata: ["messages": "\(count)"])
        print("redriven: \(count)")
    }
}

/// Republishes dead-lettered messages to their original topics, without the `dlq_*` headers.
/// It moves what the dead-letter topic held when it started and stops there: a message that fails
/// again while the redrive runs waits for the next redrive instead of circling forever.
public struct DeadLetterRedrive: Sendable {
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    let topic: String
    let logger: Logger

    public init(consumer: KafkaConsumer, producer: KafkaProducer, topic: String, logger: Logger) {
        self.consumer = consumer
        self.producer = producer
        self.topic = topic
        self.logger = logger
    }

    /// Runs until every message present at the start was moved, `limit` messages were moved, or
    /// nothing arrived for `idle` (the idle clock starts after `joinGrace`, while the group forms).
    /// Returns how many moved.
    public func run(idle: Duration, limit: Int?, joinGrace: Duration = .seconds(10)) async throws -> Int {
        let moved = NIOLockedValueBox(0)
        let lastActivity = NIOLockedValueBox(ContinuousClock.now + joinGrace)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await producer.run() }
            group.addTask { try await consumer.run() }
            let ends = try await consumer.endOffsets(topic: topic)
            logger.debug("redrive started", metadata: ["kafka.topic": "\(topic)", "kafka.end_offsets": "\(ends)"])
            group.addTask {
                var remaining = ends.filter { $0.value > 0 }
                for try await message in consumer.messages {
                    lastActivity.withLockedValue { $0 = .now }
                    guard message.topic == topic, let end = ends[message.partition], message.offset < end else {
                        // Arrived after the start: left (unstored) for the next redrive.
                        remaining[message.partition] = nil
                        if remaining.isEmpty { return }
                        continue
                    }
                    if let original = DeadLetters.originalTopic(of: message) {
                        let headers = message.headers.filter { !$0.key.hasPrefix(DeadLetters.headerPrefix) }
                        _ = try await producer.send(topic: original, key: message.key, value: message.value, headers: headers)
                        moved.withLockedValue { $0 += 1 }
                    } else {
                        logger.warning("dead letter without original topic skipped", metadata: ["kafka.offset": "\(message.offset)"])
                    }
                    try consumer.storeOffset(message)
                    lastActivity.withLockedValue { $0 = .now }
                    if message.offset >= end - 1 { remaining[message.partition] = nil }
                    if remaining.isEmpty { return }
                    if let limit, moved.withLockedValue({ $0 }) >= limit { return }
                }
            }
            group.addTask {
                while ContinuousClock.now - lastActivity.withLockedValue({ $0 }) < idle {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            // The mover or the idle watchdog finishes first; either way the run is over.
            _ = try await group.next()
            try await consumer.commit()
            group.cancelAll()
            return moved.withLockedValue { $0 }
        }
    }
}

/// `serve`: run the service until SIGTERM/SIGINT.
public struct ServeCommand<Module: ServiceModule>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "serve", abstract: "Serve HTTP, relay the outbox and consume events until SIGTERM.")
    }
    public init() {}
    public func run() async throws { try await ServiceRuntime<Module>.serve() }
}

/// `migrate`: apply pending migrations and exit.
public struct MigrateCommand<Module: ServiceModule>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "migrate", abstract: "Apply pending database migrations (idempotent, advisory-locked).")
    }
    public init() {}
    public func run() async throws { try await ServiceRuntime<Module>.migrate() }
}

/// `dlq redrive`: put dead-lettered messages back on their original topics.
public struct DeadLetterCommand<Module: ServiceModule>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "dlq", abstract: "Operate on the service's dead-letter topic.", subcommands: [Redrive.self])
    }
    public init() {}

    public struct Redrive: AsyncParsableCommand {
        public static var configuration: CommandConfiguration {
            CommandConfiguration(commandName: "redrive", abstract: "Republish dead-lettered messages to their original topics.")
        }
        @Option(help: "Stop after this many seconds without a message.") var idleSeconds: Int = 5
        @Option(help: "Stop after this many messages.") var limit: Int?
        public init() {}
        public func run() async throws {
            try await ServiceRuntime<Module>.redrive(idle: .seconds(idleSeconds), limit: limit)
        }
    }
}

/// `jobs list [--failed]` and `jobs retry ID`: what an operator does with jobs that kept failing.
public struct JobsCommand<Module: ServiceModule>: AsyncParsableCommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "jobs", abstract: "Inspect the service's durable jobs and re-queue parked ones.",
                             subcommands: [List.self, Retry.self])
    }
    public init() {}

    public struct List: AsyncParsableCommand {
        public static var configuration: CommandConfiguration {
            CommandConfiguration(commandName: "list", abstract: "List waiting jobs (soonest first), or parked ones with --failed.")
        }
        @Flag(help: "Only jobs parked after failing every attempt.") var failed = false
        @Option(help: "At most this many jobs.") var limit: Int = 50
        public init() {}
        public func run() async throws {
            let (failed, limit) = (failed, max(1, min(limit, 10_000)))
            let records = try await ServiceRuntime<Module>.withDatabase { client, _, logger in
                try await JobsAdministration(client: client, logger: logger).list(failed: failed, limit: limit)
            }
            print("id\tkind\tkey\tdue_at\tattempts\tfailed_at\tlast_error")
            for job in records {
                let error = (job.lastError ?? "-").replacingOccurrences(of: "\n", with: " ").prefix(200)
                print("\(job.id.uuidString.lowercased())\t\(job.kind)\t\(job.key.isEmpty ? "-" : job.key)\t\(FastTime.rfc3339(job.dueAt))\t\(job.attempts)\t\(job.failedAt.map(FastTime.rfc3339) ?? "-")\t\(error)")
            }
        }
    }

    public struct Retry: AsyncParsableCommand {
        public static var configuration: CommandConfiguration {
            CommandConfiguration(commandName: "retry", abstract: "Re-queue a parked job to run now, its attempts reset.")
        }
        @Argument(help: "The job's id (from `jobs list --failed`).") var id: String
        public init() {}
        public func run() async throws {
            guard let id = UUID(uuidString: id) else { throw ValidationError("\(self.id) is not a job id (a UUID)") }
            let found = try await ServiceRuntime<Module>.withDatabase { client, _, logger in
                try await JobsAdministration(client: client, logger: logger).retry(id: id)
            }
            guard found else { throw ValidationError("no parked job has id \(id.uuidString.lowercased())") }
            print("re-queued: \(id.uuidString.lowercased())")
        }
    }
}

/// Why a service could not start, in words an operator can act on.
public struct StartupFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A one-off command could not connect to its database in time; the log lines before it say why
/// (refused, authentication, TLS verification).
public struct DatabaseUnreachable: Error, CustomStringConvertible {
    public var database: DatabaseSettings
    public var waited: Duration

    public var description: String {
        "no connection to \(database) within \(waited) (DATABASE_CONNECT_DEADLINE_MS); the log above has each attempt's error"
    }
}
