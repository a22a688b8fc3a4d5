import Crypto
import Foundation
import Logging
import PostgresNIO

/// One forward-only SQL migration. Its id orders it; its checksum pins its text once applied.
public struct Migration: Sendable, Equatable {
    public var id: String
    public var sql: String

    public init(id: String, sql: String) {
        self.id = id
        self.sql = sql
    }

    /// SHA-256 of the file's text, hex-encoded.
    public var checksum: String {
        SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case badFileName(String)
    case duplicateNumber(String)
    case changedAfterApplied(id: String)
    case unknownApplied(id: String)
    case unreadableDirectory(String)

    public var description: String {
        switch self {
        case .badFileName(let name): "migration file \(name) must be named NNNN_description.sql"
        case .duplicateNumber(let id): "two migration files share the number of \(id)"
        case .changedAfterApplied(let id): "migration \(id) was changed after it was applied; add a new migration instead"
        case .unknownApplied(let id): "the database has migration \(id) applied, which this build does not know; deploy a newer build"
        case .unreadableDirectory(let path): "migrations directory \(path) cannot be read"
        }
    }
}

/// The ordered migrations of one service: the platform's own tables (outbox, inbox) first,
/// then the service's numbered files.
public struct MigrationSet: Sendable {
    public var migrations: [Migration]

    public init(_ migrations: [Migration]) {
        self.migrations = migrations
    }

    /// Loads `NNNN_name.sql` files from a directory, sorted by number.
    public static func load(directory: URL) throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw MigrationError.unreadableDirectory(directory.path)
        }
        var seen: Set<String> = []
        var result: [(Int, Migration)] = []
        for name in names where name.hasSuffix(".sql") {
            let number = name.prefix { $0.isNumber }
            guard number.count >= 4, let value = Int(number), name.dropFirst(number.count).first == "_" else {
                throw MigrationError.badFileName(name)
            }
            guard seen.insert(String(number)).inserted else { throw MigrationError.duplicateNumber(name) }
            let sql = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            result.append((value, Migration(id: String(name.dropLast(4)), sql: sql)))
        }
        return result.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// What must be applied, given what the database recorded (id → checksum).
    /// Refuses a changed applied file and an applied id this build does not know, unless that id
    /// is newer than every file this build has in its series: the database is ahead of this build
    /// (a rollback after an expand migration), which expand/contract keeps compatible.
    public func pending(applied: [String: String]) throws -> [Migration] {
        let known = Set(migrations.map(\.id))
        let ahead = Set(newerApplied(applied: applied))
        if let unknown = applied.keys.sorted().first(where: { !known.contains($0) && !ahead.contains($0) }) {
            throw MigrationError.unknownApplied(id: unknown)
        }
        var pending: [Migration] = []
        for migration in migrations {
            if let checksum = applied[migration.id] {
                guard checksum == migration.checksum else { throw MigrationError.changedAfterApplied(id: migration.id) }
            } else {
                pending.append(migration)
            }
        }
        return pending
    }

    /// Applied ids this build does not know that come after its last file of the same series
    /// (`platform_NNNN_…` or `NNNN_…`), in order.
    public func newerApplied(applied: [String: String]) -> [String] {
        let known = Set(migrations.map(\.id))
        var last: [String: Int] = [:]
        for migration in migrations {
            guard let (series, number) = Self.position(migration.id) else { continue }
            last[series] = max(last[series] ?? 0, number)
        }
        return applied.keys.filter { id in
            guard !known.contains(id), let (series, number) = Self.position(id) else { return false }
            return number > (last[series] ?? 0)
        }.sorted()
    }

    /// The series (the text before the number) and the number of an id such as `platform_0001_outbox`.
    static func position(_ id: String) -> (series: String, number: Int)? {
        guard let start = id.firstIndex(where: \.isNumber) else { return nil }
        let digits = id[start...].prefix { $0.isNumber }
        guard digits.count >= 4, let number = Int(digits) else { return nil }
        return (String(id[..<start]), number)
    }
}

/// Applies a service's migrations to its schema under an advisory lock, one transaction per file.
public struct Migrator: Sendable {
    let client: PostgresClient
    let schema: String
    let set: MigrationSet
    let logger: Logger

    public init(client: PostgresClient, schema: String, migrations: MigrationSet, logger: Logger) {
        self.client = client
        self.schema = schema
        self.set = migrations
        self.logger = logger
    }

    /// Applies what is pending; running it again is a no-op. Returns the ids applied.
    @discardableResult
    public func migrate() async throws -> [String] {
        let lockKey = Database.advisoryLockKey("\(schema).migrations")
        return try await client.withConnection { connection in
            // Session lock: concurrent `migrate` runs (several pods starting) wait here in turn.
            try await connection.query("SELECT pg_advisory_lock(\(lockKey))", logger: logger)
            do {
                let applied = try await migrateLocked(connection)
                try await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
                return applied
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(lockKey))", logger: logger)
                throw error
            }
        }
    }

    private func migrateLocked(_ connection: PostgresConnection) async throws -> [String] {
        try await connection.query("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                id text PRIMARY KEY,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        let applied = try await Self.applied(connection, logger: logger)
        let pending = try set.pending(applied: applied)
        let ahead = set.newerApplied(applied: applied)
        if !ahead.isEmpty {
            logger.warning("the database has newer migrations than this build; running on the expanded schema",
                           metadata: ["db.schema": "\(schema)", "migration.newest": "\(ahead.last!)"])
        }
        for migration in pending {
            try await connection.withTransaction(logger: logger) { transaction in
                // The extended protocol takes one statement at a time, so a file is split first.
                for statement in SQLStatements.split(migration.sql) {
                    try await transaction.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await transaction.query(
                    "INSERT INTO schema_migrations (id, checksum) VALUES (\(migration.id), \(migration.checksum))",
                    logger: logger)
            }
            logger.info("migration applied", metadata: ["migration.id": "\(migration.id)", "db.schema": "\(schema)"])
        }
        return pending.map(\.id)
    }

    /// Number of migrations not yet applied; readiness stays false until it is zero.
    public func pendingCount() async throws -> Int {
        let applied: [String: String] = try await client.withConnection { connection in
            let exists = try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger)
            for try await (present) in exists.decode(Bool.self) where !present { return [:] }
            return try await Self.applied(connection, logger: logger)
        }
        return try set.pending(applied: applied).count
    }

    static func applied(_ connection: PostgresConnection, logger: Logger) async throws -> [String: String] {
        var applied: [String: String] = [:]
        let rows = try await connection.query("SELECT id, checksum FROM schema_migrations", logger: logger)
        for try await (id, checksum) in rows.decode((String, String).self) { applied[id] = checksum }
        return applied
    }
}

/// The platform's own tables, applied before each service's files.
public enum PlatformMigrations {
    public static let all: [Migration] = [
        Migration(id: "platform_0001_outbox_inbox", sql: """
            CREATE TABLE outbox (
                seq bigserial PRIMARY KEY,
                event_id uuid NOT NULL UNIQUE,
                topic text NOT NULL,
                key text NOT NULL,
                type text NOT NULL,
                source text NOT NULL,
                subject text,
                time timestamptz NOT NULL,
                traceparent text,
                data bytea NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                sent_at timestamptz
            );
            CREATE INDEX outbox_unsent_idx ON outbox (seq) WHERE sent_at IS NULL;
            CREATE INDEX outbox_sent_at_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;

            CREATE TABLE inbox (
                event_id text PRIMARY KEY,
                type text NOT NULL,
                source text NOT NULL,
                topic text NOT NULL,
                received_at timestamptz NOT NULL DEFAULT now()
            );
            """),
        Migration(id: "platform_0002_jobs_idempotency_clock", sql: """
            -- Durable jobs and timers (Jobs.swift): one per (kind, key), due in business time,
            -- claimed with FOR UPDATE SKIP LOCKED; parked when failed_at is set.
            CREATE TABLE jobs (
                id uuid PRIMARY KEY,
                kind text NOT NULL,
                key text NOT NULL,
                payload jsonb NOT NULL,
                due_at timestamptz NOT NULL,
                attempts int NOT NULL DEFAULT 0,
                last_error text,
                failed_at timestamptz,
                traceparent text,
                created_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (kind, key)
            );
            CREATE INDEX jobs_due_idx ON jobs (due_at) WHERE failed_at IS NULL;
            CREATE INDEX jobs_failed_idx ON jobs (failed_at) WHERE failed_at IS NOT NULL;

            -- Idempotency-Key records (Idempotency.swift): the first answer, kept 24 hours.
            CREATE TABLE idempotency_keys (
                caller uuid NOT NULL,
                key text NOT NULL,
                fingerprint bytea NOT NULL,
                status int NOT NULL,
                content_type text NOT NULL,
                headers jsonb NOT NULL,
                body bytea NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (caller, key)
            );
            CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

            -- The test clock's offset (TEST_CLOCK=on only; never written in production).
            CREATE TABLE business_clock (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                offset_ms bigint NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now()
            );

            -- Housekeeping prunes the inbox by age.
            CREATE INDEX inbox_received_idx ON inbox (received_at);
            """),
    ]
}

/// Splits a SQL script into statements at top-level semicolons, leaving quoted strings,
/// quoted identifiers, dollar-quoted bodies and comments intact.
public enum SQLStatements {
    public static func split(_ script: String) -> [String] {
        var statements: [String] = []
        var current: [Character] = []
        let characters = Array(script)
        var index = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty, !isOnlyComments(text) { statements.append(text) }
            current.removeAll(keepingCapacity: true)
        }
        while index < characters.count {
            let character = characters[index]
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            switch character {
            case "'", "\"":
                current.append(character)
                index += 1
                while index < characters.count {
                    current.append(characters[index])
                    if characters[index] == character {
                        // A doubled quote is an escaped quote, not the end.
                        if index + 1 < characters.count, characters[index + 1] == character {
                            current.append(characters[index + 1])
                            index += 2
                            continue
                        }
                        index += 1
                        break
                    }
                    index += 1
                }
            case "-" where next == "-":
                while index < characters.count, characters[index] != "\n" {
                    current.append(characters[index])
                    index += 1
                }
            case "/" where next == "*":
                current.append(contentsOf: ["/", "*"])
                index += 2
                while index < characters.count {
                    if characters[index] == "*", index + 1 < characters.count, characters[index + 1] == "/" {
                        current.append(contentsOf: ["*", "/"])
                        index += 2
                        break
                    }
                    current.append(characters[index])
                    index += 1
                }
            case "$":
                // Dollar quoting: $$ or $tag$ ... same tag.
                var end = index + 1
                while end < characters.count, characters[end].isLetter || characters[end].isNumber || characters[end] == "_" { end += 1 }
                if end < characters.count, characters[end] == "$" {
                    let tag = Array(characters[index...end])
                    current.append(contentsOf: tag)
                    index = end + 1
                    while index < characters.count {
                        if characters[index] == "$", index + tag.count <= characters.count, Array(characters[index..<(index + tag.count)]) == tag {
                            current.append(contentsOf: tag)
                            index += tag.count
                            break
                        }
                        current.append(characters[index])
                        index += 1
                    }
                } else {
                    current.append(character)
                    index += 1
                }
            case ";":
                flush()
                index += 1
            default:
                current.append(character)
                index += 1
            }
        }
        flush()
        return statements
    }

    static func isOnlyComments(_ text: String) -> Bool {
        text.split(separator: "\n").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix("--") || $0.trimmingCharacters(in: .whitespaces).isEmpty }
    }
}
