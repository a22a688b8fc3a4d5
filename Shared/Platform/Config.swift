import Foundation

/// Reads configuration from the environment and, optionally, from a `KEY=VALUE` file named by `CONFIG_FILE`.
/// The environment always wins over the file so an operator can override one key without editing the file.
public struct ConfigReader: Sendable {
    private let values: [String: String]

    /// Keys whose values are never logged or echoed in error messages.
    public static let secretMarkers = ["PASSWORD", "SECRET", "KEY", "TOKEN", "DATABASE_URL", "SMTP_URL"]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        var merged: [String: String] = [:]
        if let path = environment["CONFIG_FILE"], !path.isEmpty {
            let text: String
            do {
                text = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ConfigError.unreadableFile(path: path)
            }
            merged = try Self.parseFile(text, path: path)
        }
        for (key, value) in environment { merged[key] = value }
        self.values = merged
    }

    /// A reader over fixed values, for tests.
    public init(values: [String: String]) {
        self.values = values
    }

    /// Parses `KEY=VALUE` lines; blank lines and `#` comments are ignored, values may be quoted.
    static func parseFile(_ text: String, path: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw ConfigError.malformedLine(path: path, line: index + 1)
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            guard !key.isEmpty else { throw ConfigError.malformedLine(path: path, line: index + 1) }
            result[key] = value
        }
        return result
    }

    public func string(_ key: String) -> String? {
        guard let value = values[key], !value.isEmpty else { return nil }
        return value
    }

    public func string(_ key: String, default fallback: String) -> String {
        string(key) ?? fallback
    }

    public func int(_ key: String, default fallback: Int) throws -> Int {
        guard let raw = string(key) else { return fallback }
        guard let value = Int(raw) else { throw ConfigError.invalidValue(key: key, expected: "an integer") }
        return value
    }

    public func int(_ key: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
        let value = try int(key, default: fallback)
        guard range.contains(value) else {
            throw ConfigError.invalidValue(key: key, expected: "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    public func duration(milliseconds key: String, default fallback: Int) throws -> Duration {
        .milliseconds(try int(key, default: fallback, range: 1...86_400_000))
    }

    public func required(_ key: String) throws -> String {
        guard let value = string(key) else { throw ConfigError.missing(key: key) }
        return value
    }

    public static func isSecret(_ key: String) -> Bool {
        secretMarkers.contains { key.uppercased().contains($0) }
    }
}

public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case missing(key: String)
    case invalidValue(key: String, expected: String)
    case unreadableFile(path: String)
    case malformedLine(path: String, line: Int)

    public var description: String {
        switch self {
        case .missing(let key): "configuration key \(key) is required"
        case .invalidValue(let key, let expected): "configuration key \(key) must be \(expected)"
        case .unreadableFile(let path): "configuration file \(path) cannot be read"
        case .malformedLine(let path, let line): "configuration file \(path) line \(line) is not KEY=VALUE"
        }
    }
}

/// The keys every service reads. Documented in the README's configuration table.
public struct ServiceSettings: Sendable {
    public var serviceName: String
    public var httpHost: String
    public var httpPort: Int
    public var database: DatabaseSettings?
    public var kafkaBootstrapServers: String
    /// Consumer group timing for every consumer of the service.
    public var kafkaConsumerProperties: [String: String]
    /// TLS and SASL settings for every Kafka client (producer, consumers, redrive).
    public var kafkaSecurity: KafkaSecurity
    public var jwksURL: String
    public var tokenIssuer: String
    public var tokenAudience: String
    public var maxBodyBytes: Int
    public var outboxPollInterval: Duration
    public var consumerMaxAttempts: Int
    public var consumerRetryBackoff: Duration
    public var consumerBatchSize: Int
    public var shutdownGracePeriod: Duration
    /// `TEST_CLOCK=on` (dev and tests only): `POST /internal/test-clock` moves the business clock.
    public var testClock: Bool
    /// Job runner workers, jobs claimed per transaction, and the longest sleep between looks.
    public var jobConcurrency: Int
    public var jobBatchSize: Int
    /// How long a job worker woken by a NOTIFY waits for more jobs before claiming its batch.
    public var jobGatherMilliseconds: Int
    public var jobPollInterval: Duration

    public init(serviceName: String, defaultPort: Int, needsDatabase: Bool = true, reader: ConfigReader) throws {
        self.serviceName = serviceName
        self.httpHost = reader.string("HTTP_HOST", default: "127.0.0.1")
        self.httpPort = try reader.int("HTTP_PORT", default: defaultPort, range: 1...65535)
        self.database = needsDatabase ? try Self.database(serviceName: serviceName, reader: reader) : nil
        self.kafkaBootstrapServers = reader.string("KAFKA_BOOTSTRAP_SERVERS", default: "127.0.0.1:9092")
        // A restarted consumer rejoins its group after the departed member's session times out;
        // 6 s keeps a rolling restart quick, heartbeats every 2 s keep it safe.
        self.kafkaConsumerProperties = [
            "session.timeout.ms": String(try reader.int("KAFKA_SESSION_TIMEOUT_MS", default: 6_000, range: 1_000...300_000)),
            "heartbeat.interval.ms": String(try reader.int("KAFKA_HEARTBEAT_INTERVAL_MS", default: 2_000, range: 100...100_000)),
            // How long a fetch may wait for data at the broker. Real brokers answer as soon as data
            // arrives; the dev broker waits the whole time, so this bounds its delivery latency.
            "fetch.wait.max.ms": String(try reader.int("KAFKA_FETCH_WAIT_MAX_MS", default: 100, range: 1...30_000)),
        ]
        self.kafkaSecurity = try KafkaSecurity(reader: reader)
        self.jwksURL = reader.string("JWKS_URL", default: "http://127.0.0.1:8081/.well-known/jwks.json")
        self.tokenIssuer = reader.string("JWT_ISSUER", default: "marketplace-identity")
        self.tokenAudience = reader.string("JWT_AUDIENCE", default: "marketplace")
        self.maxBodyBytes = try reader.int("HTTP_MAX_BODY_BYTES", default: 1_048_576, range: 1_024...104_857_600)
        self.outboxPollInterval = try reader.duration(milliseconds: "OUTBOX_POLL_INTERVAL_MS", default: 1_000)
        self.consumerMaxAttempts = try reader.int("CONSUMER_MAX_ATTEMPTS", default: 5, range: 1...100)
        self.consumerRetryBackoff = try reader.duration(milliseconds: "CONSUMER_RETRY_BACKOFF_MS", default: 200)
        self.consumerBatchSize = try reader.int("CONSUMER_BATCH_SIZE", default: 100, range: 1...10_000)
        self.shutdownGracePeriod = try reader.duration(milliseconds: "SHUTDOWN_GRACE_MS", default: 20_000)
        switch reader.string("TEST_CLOCK", default: "off") {
        case "on": self.testClock = true
        case "off": self.testClock = false
        default: throw ConfigError.invalidValue(key: "TEST_CLOCK", expected: "on or off")
        }
        self.jobConcurrency = try reader.int("JOBS_CONCURRENCY", default: 4, range: 1...64)
        self.jobBatchSize = try reader.int("JOBS_BATCH_SIZE", default: 20, range: 1...1_000)
        self.jobGatherMilliseconds = try reader.int("JOBS_GATHER_MS", default: 5, range: 0...1_000)
        self.jobPollInterval = try reader.duration(milliseconds: "JOBS_POLL_INTERVAL_MS", default: 1_000)
    }
}

extension ServiceSettings {
    /// Only the database keys (`DATABASE_URL`, `DATABASE_POOL_SIZE`): what `migrate` and the other
    /// one-off commands need, so a migration Job does not need the Kafka credentials.
    public static func database(serviceName: String, reader: ConfigReader) throws -> DatabaseSettings {
        let url = reader.string("DATABASE_URL", default: "postgres://\(serviceName):\(serviceName)@127.0.0.1:5432/marketplace")
        var database = try DatabaseSettings(url: url)
        database.poolSize = try reader.int("DATABASE_POOL_SIZE", default: 10, range: 1...200)
        return database
    }
}

/// Where and how to reach Postgres, parsed from a `postgres://user:password@host:port/database` URL.
public struct DatabaseSettings: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var poolSize: Int = 10
    public var requireTLS: Bool = false
    /// PEM file of the certificate authorities that sign the server's certificate (`sslrootcert`),
    /// for a private CA such as CloudNativePG's or a cloud provider's; the system roots otherwise.
    public var certificateAuthorityFile: String?

    public init(url: String) throws {
        guard let components = URLComponents(string: url),
              components.scheme == "postgres" || components.scheme == "postgresql",
              let host = components.host, !host.isEmpty,
              let user = components.user, !user.isEmpty
        else {
            throw ConfigError.invalidValue(key: "DATABASE_URL", expected: "a postgres://user:password@host:port/database URL")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = user.removingPercentEncoding ?? user
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? "marketplace" : path
        let query = components.queryItems ?? []
        // TLS always verifies the certificate chain and host name (libpq's verify-full), for
        // `require` too: an unverified connection would hand the password to whoever answers.
        self.requireTLS = query.contains { $0.name == "sslmode" && ($0.value == "require" || $0.value == "verify-full") }
        if let file = query.first(where: { $0.name == "sslrootcert" })?.value, !file.isEmpty {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw ConfigError.invalidValue(key: "DATABASE_URL", expected: "a URL whose sslrootcert names a readable PEM file")
            }
            self.certificateAuthorityFile = file
            self.requireTLS = true
        }
    }

    /// Safe to log: the password is never included.
    public var description: String {
        "postgres://\(username)@\(host):\(port)/\(database)"
    }
}
