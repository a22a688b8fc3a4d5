import Foundation
import Logging
import NIOCore
import PostgresNIO

extension DatabaseSettings {
    /// A pooled client for this service's role. Run it as a ServiceLifecycle service.
    public func makeClient(logger: Logger) -> PostgresClient {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable)
        configuration.options.maximumConnections = poolSize
        configuration.options.minimumConnections = 1
        configuration.options.connectTimeout = .seconds(5)
        return PostgresClient(configuration: configuration, backgroundLogger: logger)
    }
}

public enum Database {
    /// Runs `body` in a transaction, rethrowing the body's own error (not the driver's wrapper),
    /// so domain errors keep their meaning.
    public static func transaction<Result>(
        _ client: PostgresClient, logger: Logger,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresConnection) async throws -> sending Result
    ) async throws -> sending Result {
        do {
            return try await client.withTransaction(logger: logger, isolation: isolation, body)
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error.commitError ?? error.beginError ?? error
        }
    }

    /// True when the error is Postgres reporting SQLSTATE `code`.
    public static func isSQLState(_ error: any Error, _ code: String) -> Bool {
        if let psql = error as? PSQLError { return psql.serverInfo?[.sqlState] == code }
        if let wrapped = error as? PostgresTransactionError {
            return [wrapped.closureError, wrapped.commitError].compactMap { $0 }.contains { isSQLState($0, code) }
        }
        return false
    }

    public static let uniqueViolation = "23505"
    public static let serializationFailure = "40001"
    public static let insufficientPrivilege = "42501"

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
