import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Platform
import PostgresNIO

/// A stand-in service around the platform's job runner, for the tests that must kill a real
/// process (`kill -9` before a job is due, or in the middle of one) and for `make bench`'s jobs
/// figures. Its one job kind, `probe.record`, writes a row to `probe_runs` in the job's own
/// transaction: a row per committed run, so "ran exactly once" is a count.
@main
struct JobProbe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobprobe",
        abstract: "Run, feed and measure the platform's job runner against a schema of its own.",
        subcommands: [Run.self, Schedule.self, Bench.self])

    struct Options: ParsableArguments {
        @Option(help: "A Postgres URL whose role may create the schema.") var databaseURL: String
        @Option(help: "The schema (and service name) to use.") var schema: String
    }

    static let kind = JobKind<ProbePayload>("probe.record", maxAttempts: 3, backoff: .milliseconds(100))

    struct ProbePayload: Codable, Sendable {
        var label: String
        /// Milliseconds the handler sleeps after writing its row, before its transaction commits.
        var holdMilliseconds: Int
    }

    /// One line on standard output, written at once (the test reading it waits for it).
    static func say(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBytes { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }

    static let migrations = PlatformMigrations.all + [
        Migration(id: "0001_probe_runs", sql: """
            CREATE TABLE probe_runs (
                id bigserial PRIMARY KEY,
                job_id uuid NOT NULL,
                label text NOT NULL,
                due_at timestamptz NOT NULL,
                started_at timestamptz NOT NULL
            );
            """),
    ]

    static func handlers(announce: Bool) -> JobHandlers {
        var handlers = JobHandlers()
        handlers.on(kind) { payload, job, transaction in
            try await transaction.query("""
                INSERT INTO probe_runs (job_id, label, due_at, started_at)
                VALUES (\(job.id), \(payload.label), \(job.dueAt), \(transaction.now))
                """)
            if announce { say("started \(job.id.uuidString.lowercased()) \(payload.label)") }
            if payload.holdMilliseconds > 0 { try await Task.sleep(for: .milliseconds(payload.holdMilliseconds)) }
        }
        return handlers
    }

    /// A client on `schema` (created and migrated) for the duration of `body`.
    static func withSchema<T: Sendable>(_ options: Options, poolSize: Int = 10, _ body: @Sendable (PostgresClient, Logger) async throws -> T) async throws -> T {
        var logger = Logger(label: "jobprobe")
        logger.logLevel = .warning
        var settings = try DatabaseSettings(url: options.databaseURL)
        settings.poolSize = poolSize
        var configuration = PostgresClient.Configuration(host: settings.host, port: settings.port, username: settings.username,
                                                         password: settings.password, database: settings.database, tls: .disable)
        configuration.options.maximumConnections = poolSize
        configuration.options.additionalStartupParameters = [("search_path", options.schema)]
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            do {
                try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(options.schema)\""), logger: logger)
                try await Migrator(client: client, schema: options.schema, migrations: MigrationSet(migrations), logger: logger).migrate()
                return try await body(client, logger)
            } catch let error as PSQLError {
                // A tool's user needs the server's message, not the driver's privacy-minded summary.
                throw ProbeFailure(description: String(reflecting: error))
            }
        }
    }

    /// `run`: the job runner until SIGTERM (or SIGKILL), printing `ready` and each job it starts.
    struct Run: AsyncParsableCommand {
        @OptionGroup var options: Options
        @Option(help: "Runner workers.") var concurrency = 4
        @Option(help: "Jobs claimed per transaction.") var batchSize = 20

        func run() async throws {
            let (concurrency, batchSize) = (concurrency, batchSize)
            try await JobProbe.withSchema(options) { client, logger in
                let runner = JobRunner(client: client, handlers: JobProbe.handlers(announce: true), service: options.schema,
                                       clock: BusinessClock(), concurrency: concurrency, batchSize: batchSize,
                                       pollInterval: .milliseconds(500), logger: logger)
                say("ready")
                try await runner.run()
            }
        }
    }

    /// `schedule`: jobs due in `--due-in-ms`, one transaction each, as a service schedules them.
    struct Schedule: AsyncParsableCommand {
        @OptionGroup var options: Options
        @Option var count = 1
        @Option var dueInMs = 0
        @Option var holdMs = 0
        @Option var label = "probe"

        func run() async throws {
            let (count, dueInMs, holdMs, label) = (count, dueInMs, holdMs, label)
            try await JobProbe.withSchema(options) { client, logger in
                let context = OperationContext.background(service: options.schema, logger: logger)
                for index in 0..<count {
                    try await Database.transaction(client, context) { transaction in
                        try await transaction.schedule(JobProbe.kind, key: "\(label)-\(index)",
                                                       payload: ProbePayload(label: label, holdMilliseconds: holdMs),
                                                       at: transaction.now.addingTimeInterval(Double(dueInMs) / 1000))
                    }
                }
                print("scheduled \(count)")
            }
        }
    }

    /// `bench`: what one service's runner does on this machine.
    ///  - throughput: `--jobs` due at once, drained by one runner; jobs completed per second.
    ///  - lateness: jobs scheduled at a steady `--rate` for `--seconds`, each due one second after it
    ///    was scheduled; due-to-start lateness percentiles.
    struct Bench: AsyncParsableCommand {
        @OptionGroup var options: Options
        @Option var jobs = 20_000
        @Option var rate = 100
        @Option var seconds = 20
        @Option var concurrency = 4
        @Option var batchSize = 20

        func run() async throws {
            let (jobs, rate, seconds, concurrency, batchSize) = (jobs, rate, seconds, concurrency, batchSize)
            let result = try await JobProbe.withSchema(options, poolSize: concurrency + 4) { client, logger in
                let context = OperationContext.background(service: options.schema, logger: logger)
                let runner = JobRunner(client: client, handlers: JobProbe.handlers(announce: false), service: options.schema,
                                       clock: BusinessClock(), concurrency: concurrency, batchSize: batchSize,
                                       pollInterval: .seconds(1), logger: logger)
                // Throughput: a backlog written first (in batches of 500 per transaction), then drained.
                try await client.query("TRUNCATE probe_runs", logger: logger)
                try await client.query("DELETE FROM jobs WHERE kind = 'probe.record'", logger: logger)
                let payload = ProbePayload(label: "throughput", holdMilliseconds: 0)
                for start in stride(from: 0, to: jobs, by: 500) {
                    try await Database.transaction(client, context) { transaction in
                        for index in start..<min(start + 500, jobs) {
                            try await transaction.schedule(JobProbe.kind, key: "t-\(index)", payload: payload, at: transaction.now)
                        }
                    }
                }
                let drained = try await withThrowingTaskGroup(of: Double?.self) { group in
                    group.addTask { try await runner.run(); return nil }
                    group.addTask {
                        let started = ContinuousClock.now
                        while try await Self.count(client, "SELECT count(*) FROM probe_runs WHERE label = 'throughput'", logger) < jobs {
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        let elapsed = ContinuousClock.now - started
                        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    }
                    let elapsed = try await group.next()!!
                    // Lateness at a steady rate, with the same runner still running.
                    let scheduled = rate * seconds
                    let interval = Duration.nanoseconds(1_000_000_000 / Int64(max(1, rate)))
                    let lateness = ContinuousClock.now
                    for index in 0..<scheduled {
                        try await Database.transaction(client, context) { transaction in
                            try await transaction.schedule(JobProbe.kind, key: "l-\(index)", payload: ProbePayload(label: "lateness", holdMilliseconds: 0),
                                                           at: transaction.now.addingTimeInterval(1))
                        }
                        try await Task.sleep(until: lateness + interval * (index + 1), clock: .continuous)
                    }
                    while try await Self.count(client, "SELECT count(*) FROM probe_runs WHERE label = 'lateness'", logger) < scheduled {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    group.cancelAll()
                    return elapsed
                }
                let rows = try await client.query("""
                    SELECT percentile_cont(ARRAY[0.5, 0.99, 1.0]) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM started_at - due_at) * 1000)
                    FROM probe_runs WHERE label = 'lateness'
                    """, logger: logger)
                var percentiles: [Double] = []
                for try await value in rows.decode([Double].self) { percentiles = value }
                return BenchResult(jobs: jobs, seconds: drained, jobsPerSecond: Double(jobs) / drained, rate: rate, latenessJobs: rate * seconds,
                                   latenessP50Ms: percentiles.first ?? -1, latenessP99Ms: percentiles.dropFirst().first ?? -1,
                                   latenessMaxMs: percentiles.last ?? -1, concurrency: concurrency, batchSize: batchSize)
            }
            print(try JSONWriter.string(result))
        }

        static func count(_ client: PostgresClient, _ query: PostgresQuery, _ logger: Logger) async throws -> Int {
            for try await value in try await client.query(query, logger: logger).decode(Int.self) { return value }
            return 0
        }
    }

    struct ProbeFailure: Error, CustomStringConvertible {
        var description: String
    }

    struct BenchResult: Codable {
        var jobs: Int
        var seconds: Double
        var jobsPerSecond: Double
        var rate: Int
        var latenessJobs: Int
        var latenessP50Ms: Double
        var latenessP99Ms: Double
        var latenessMaxMs: Double
        var concurrency: Int
        var batchSize: Int
    }
}
