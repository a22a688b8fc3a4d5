import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Metrics
import PostgresNIO
import ServiceLifecycle

extension DatabaseSettings {
    /// A pooled client for this service's role. Run it as a ServiceLifecycle service.
    public func makeClient(logger: Logger) -> PostgresClient {
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        if let certificateAuthorityFile { tlsConfiguration.trustRoots = .file(certificateAuthorityFile) }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(tlsConfiguration) : .disable)
        configuration.options.maximumConnections = poolSize
        configuration.options.minimumConnections = 1
        configuration.options.connectTimeout = .seconds(5)
        // Names this process's connections in pg_stat_activity (read by DatabasePoolMetrics).
        configuration.options.additionalStartupParameters = [("application_name", Self.applicationName(for: username))]
        return PostgresClient(configuration: configuration, backgroundLogger: logger)
    }

    /// `<role>/<host>/<pid>`: unique per process, readable by an operator.
    public static func applicationName(for role: String) -> String {
        String("\(role)/\(ProcessInfo.processInfo.hostName)/\(getpid())".prefix(63))
    }
}

public enum Database {
    /// Runs `body` in a transaction, rethrowing the body's own error (not the driver's wrapper),
    /// so domain errors keep their meaning. Not retried: prefer `transaction(_:_:body)` with a context.
    public static func transaction<Result>(
        _ client: PostgresClient, logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        try await client.withConnection(isolation: isolation) { connection in
            // BEGIN, COMMIT and ROLLBACK are sent here rather than by PostgresNIO's withTransaction,
            // so that none is written to a connection Postgres has closed (it would never be
            // answered): a closed connection's transaction was rolled back by the server already.
            try checkOpen(connection)
            try await connection.query("BEGIN", logger: logger)
            let result: Result
            do {
                result = try await body(connection)
            } catch {
                if !connection.isClosed { _ = try? await connection.query("ROLLBACK", logger: logger) }
                throw error
            }
            try checkOpen(connection)
            try await connection.query("COMMIT", logger: logger)
            return result
        }
    }

    /// A pooled connection Postgres closed a moment ago (a restart, a failover) can still be handed
    /// out; PostgresNIO never answers a statement written to it, so the caller would wait forever.
    /// Checked before the first statement: the caller gets `ConnectionClosed`, which
    /// `transaction(_:_:body)` retries on a fresh connection.
    public static func checkOpen(_ connection: PostgresConnection) throws {
        if connection.isClosed { throw ConnectionClosed() }
    }

    /// One statement on a pooled connection checked open (see `checkOpen`), its rows read by `read`
    /// before the connection goes back. The background loops (the outbox relay, the job runner) use
    /// it rather than `client.query`, whose connection cannot be checked: a loop stuck on a
    /// connection Postgres closed would stop for good.
    public static func query<Result>(
        _ client: PostgresClient, _ query: PostgresQuery, logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ read: (PostgresRowSequence) async throws -> sending Result
    ) async throws -> sending Result {
        try await client.withConnection(isolation: isolation) { connection in
            try checkOpen(connection)
            return try await read(try await connection.query(query, logger: logger))
        }
    }

    /// True when the error is the connection going away under the work (Postgres restarting or
    /// shutting down: SQLSTATE class 57 or 08, a closed or broken connection, `ConnectionClosed`):
    /// nothing was committed, and the same work on a fresh connection may succeed.
    public static func isConnectionLoss(_ error: any Error) -> Bool {
        switch error {
        case is ConnectionClosed:
            return true
        case let psql as PSQLError:
            if let state = psql.serverInfo?[.sqlState], state.hasPrefix("57P") || state.hasPrefix("08") { return true }
            if psql.code == .clientClosedConnection || psql.code == .serverClosedConnection || psql.code == .connectionError { return true }
            return psql.underlying.map(isConnectionLoss) ?? false
        case let wrapped as PostgresTransactionError:
            return [wrapped.closureError, wrapped.beginError, wrapped.commitError].compactMap { $0 }.contains(where: isConnectionLoss)
        default:
            return false
        }
    }

    /// The pool handed out a connection that was already closed; nothing was sent on it.
    public struct ConnectionClosed: Error, CustomStringConvertible {
        public var description: String { "the pooled connection was already closed" }
    }

    /// How often a transaction that lost a serialization conflict or a deadlock is run again.
    public static let maximumAttempts = 4

    /// Runs `body` in a transaction with the operation's context. A serialization failure or a
    /// deadlock (SQLSTATE 40001, 40P01) rolls back and runs the whole body again, at most
    /// `attempts` times, after a short random pause (so two transactions that collided do not
    /// collide again in lockstep); after the last attempt the error reaches the caller (a 503 with
    /// `Retry-After`). The body must therefore do nothing outside the database that it cannot repeat.
    public static func transaction<Result>(
        _ client: PostgresClient, _ context: OperationContext, attempts: Int = maximumAttempts,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (Transaction) async throws -> sending Result
    ) async throws -> sending Result {
        var attempt = 1
        while true {
            do {
                return try await transaction(client, logger: context.logger, isolation: isolation) { connection in
                    try await body(Transaction(connection: connection, context: context))
                }
            } catch where attempt < attempts && (SQLState(of: error)?.isTransient == true || isConnectionLoss(error)) {
                context.logger.debug("transaction retried", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try await Task.sleep(for: retryPause(after: attempt))
                attempt += 1
            }
        }
    }

    /// Runs `body` on a pooled connection with no transaction around it: each statement commits on
    /// its own, and nothing is rolled back if a later one fails. Only for work whose steps are each
    /// complete in themselves and safe to repeat (a webhook stored, then its job queued: a crash
    /// between the two is healed by the provider's redelivery), where BEGIN and COMMIT would be
    /// half the round trips.
    public static func autocommit<Result>(
        _ client: PostgresClient, _ context: OperationContext,
        _ body: (Transaction) async throws -> sending Result
    ) async throws -> sending Result {
        try await client.withConnection { connection in
            try checkOpen(connection)
            return try await body(Transaction(connection: connection, context: context))
        }
    }

    /// 5, 10, 20 … ms, each scaled by a random factor in 0.5–1.5.
    static func retryPause(after attempt: Int) -> Duration {
        let base = 5.0 * Double(1 << min(attempt - 1, 6))
        return .microseconds(Int64(base * Double.random(in: 0.5...1.5) * 1000))
    }

    /// True when the error is Postgres reporting `state`.
    public static func isSQLState(_ error: any Error, _ state: SQLState) -> Bool {
        SQLState(of: error) == state
    }

    /// A stable 64-bit advisory lock key for a name (FNV-1a), the same in every process.
    public static func advisoryLockKey(_ name: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }
}

extension PostgresConnection {
    /// `query`, unless Postgres has closed the connection (a restart): then `Database.ConnectionClosed`
    /// rather than a statement PostgresNIO would never answer. Platform code that holds a
    /// connection uses it; services use `Transaction.query`, which does the same.
    @discardableResult
    public func checkedQuery(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        try Database.checkOpen(self)
        return try await self.query(query, logger: logger)
    }
}

/// A transaction in progress and the operation it serves: what handlers, repositories, the outbox
/// and the job scheduler are given, so a state change, its events and its timers commit together.
public struct Transaction: Sendable {
    public let connection: PostgresConnection
    public let context: OperationContext

    public init(connection: PostgresConnection, context: OperationContext) {
        self.connection = connection
        self.context = context
    }

    public var logger: Logger { context.logger }
    /// Business time now.
    public var now: Date { context.now }

    /// Runs a statement in the transaction; on a connection Postgres has closed (its transaction
    /// rolled back there) it throws `Database.ConnectionClosed` instead of writing what would never be answered.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        try Database.checkOpen(connection)
        return try await connection.query(query, logger: context.logger)
    }

    /// The first row decoded as `T`, or nil.
    public func first<T: PostgresDecodable>(_ query: PostgresQuery, as type: T.Type) async throws -> T? {
        for try await value in try await self.query(query).decode(T.self) { return value }
        return nil
    }

    /// Runs a prepared statement (PostgresNIO's `PostgresPreparedStatement`: its SQL is parsed once
    /// per connection and, after a few runs, planned once), for hot paths whose parsing and
    /// planning cost more than running them: a statement of several CTEs run on every request.
    /// Its rows, decoded by the statement. Same closed-connection check as `query`.
    public func execute<Statement: PostgresPreparedStatement>(_ statement: Statement) async throws -> [Statement.Row] {
        try Database.checkOpen(connection)
        var rows: [Statement.Row] = []
        for try await row in try await connection.execute(statement, logger: context.logger) { rows.append(row) }
        return rows
    }
}

/// Samples this process's pooled connections as Postgres sees them (pg_stat_activity, by
/// application name) and publishes them as `db_pool_connections{state}` and `db_pool_max_connections`.
public struct DatabasePoolMetrics: Service {
    let client: PostgresClient
    let applicationName: String
    let maximum: Int
    let interval: Duration
    let logger: Logger

    public init(client: PostgresClient, settings: DatabaseSettings, interval: Duration = .seconds(10), logger: Logger) {
        self.client = client
        self.applicationName = DatabaseSettings.applicationName(for: settings.username)
        self.maximum = settings.poolSize
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let service = applicationName.split(separator: "/").first.map(String.init) ?? applicationName
        let maximumGauge = Gauge(label: "db_pool_max_connections", dimensions: [("service", service)])
        let gauges = ["active", "idle", "idle in transaction"].map {
            ($0, Gauge(label: "db_pool_connections", dimensions: [("service", service), ("state", $0.replacingOccurrences(of: " ", with: "_"))]))
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                maximumGauge.record(maximum)
                do {
                    var counts: [String: Int64] = [:]
                    let rows = try await client.query(
                        "SELECT state, count(*) FROM pg_stat_activity WHERE application_name = \(applicationName) AND state IS NOT NULL GROUP BY state",
                        logger: logger)
                    for try await (state, count) in rows.decode((String, Int64).self) { counts[state] = count }
                    // The sampling query's own connection is the one active connection it always sees.
                    for (state, gauge) in gauges { gauge.record(max(0, (counts[state] ?? 0) - (state == "active" ? 1 : 0))) }
                } catch {
                    logger.debug("pool metrics sample failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
