import Foundation
import Logging
import Metrics
import Platform
import PostgresNIO

/// When failed logins lock an account or an address. Pure, so it is tested exhaustively.
public struct LoginThrottlePolicy: Sendable, Equatable {
    /// Failures allowed on one account before each further failure locks it.
    public var accountFreeFailures = 5
    /// The first account lock; it doubles with every further failure, up to `accountMaximumLock`.
    public var accountFirstLock: TimeInterval = 30
    public var accountMaximumLock: TimeInterval = 900
    /// An account's failures are forgotten after this long without one.
    public var accountMemory: TimeInterval = 3600
    /// Failures from one address within `addressWindow` before it is locked for `addressLock`.
    public var addressFailures = 20
    public var addressWindow: TimeInterval = 900
    public var addressLock: TimeInterval = 900

    public init() {}

    /// The policy with the operator's overrides (`IDENTITY_LOGIN_*`).
    public init(_ config: ConfigReader) throws {
        accountFreeFailures = try config.int("IDENTITY_LOGIN_ACCOUNT_FREE_FAILURES", default: 5, range: 1...1000)
        addressFailures = try config.int("IDENTITY_LOGIN_ADDRESS_FAILURES", default: 20, range: 1...100_000)
    }

    /// The lock after the `failures`-th consecutive failure on an account, if any.
    public func accountLock(afterFailures failures: Int) -> TimeInterval? {
        guard failures > accountFreeFailures else { return nil }
        let doublings = min(failures - accountFreeFailures - 1, 20)
        return min(accountFirstLock * pow(2, Double(doublings)), accountMaximumLock)
    }

    /// The lock after `failures` failures from one address within the window, if any.
    public func addressLock(afterFailures failures: Int) -> TimeInterval? {
        failures >= addressFailures ? addressLock : nil
    }
}

/// Counts failed logins in Postgres (so every replica sees them) and refuses attempts while an
/// account or an address is locked. Checked before the password hash is computed, so a locked
/// attacker costs no Argon2 time.
struct LoginThrottle: Sendable {
    let client: PostgresClient
    let policy: LoginThrottlePolicy
    static let outcomes = ["success", "failure", "throttled"].reduce(into: [String: Counter]()) {
        $0[$1] = Counter(label: "identity_logins_total", dimensions: [("outcome", $1)])
    }

    /// Postgres text cannot hold U+0000; an address that carries one (no account can) is counted
    /// under its escaped spelling.
    static func accountKey(_ normalizedEmail: String) -> String { "account:" + normalizedEmail.replacingOccurrences(of: "\u{0}", with: "\\0") }
    static func addressKey(_ address: String) -> String { "address:" + address }

    /// Throws a 429 problem with `Retry-After` while either key is locked.
    func check(account: String, address: String?, context: OperationContext) async throws {
        let logger = context.logger
        let keys = [Self.accountKey(account)] + (address.map { [Self.addressKey($0)] } ?? [])
        let rows = try await client.query("""
            SELECT COALESCE(max(EXTRACT(EPOCH FROM locked_until - now())), 0)::float8
            FROM login_throttles WHERE key = ANY(\(keys)) AND locked_until > now()
            """, logger: logger)
        for try await remaining in rows.decode(Double.self) where remaining > 0 {
            Self.outcomes["throttled"]?.increment()
            let seconds = Int(remaining.rounded(.up))
            logger.info("login throttled", metadata: ["security.event": "login_throttled", "retry.after": "\(seconds)"])
            throw Problem(.rateLimited, "Too many failed attempts; retry after \(seconds) s.", typeSlug: "login-throttled",
                          headers: [.retryAfter: "\(seconds)"])
        }
    }

    func recordFailure(account: String, address: String?, context: OperationContext) async throws {
        let logger = context.logger
        Self.outcomes["failure"]?.increment()
        // Two keys locked in one transaction: a concurrent failure may deadlock with it, and is retried.
        try await Database.transaction(client, context) { transaction in
            try await bump(Self.accountKey(account), memory: policy.accountMemory, lock: policy.accountLock, on: transaction.connection, logger: logger)
            if let address {
                try await bump(Self.addressKey(address), memory: policy.addressWindow, lock: policy.addressLock, on: transaction.connection, logger: logger)
            }
        }
    }

    func recordSuccess(account: String, context: OperationContext) async throws {
        let logger = context.logger
        Self.outcomes["success"]?.increment()
        try await client.query("DELETE FROM login_throttles WHERE key = \(Self.accountKey(account))", logger: logger)
    }

    /// One more failure for `key`: counted within its memory window, locked as the policy says.
    private func bump(_ key: String, memory: TimeInterval, lock: (Int) -> TimeInterval?,
                      on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("INSERT INTO login_throttles (key) VALUES (\(key)) ON CONFLICT (key) DO NOTHING", logger: logger)
        let rows = try await connection.query("""
            SELECT failures, EXTRACT(EPOCH FROM now() - updated_at)::float8 FROM login_throttles WHERE key = \(key) FOR UPDATE
            """, logger: logger)
        var failures = 0
        for try await (count, quiet) in rows.decode((Int, Double).self) {
            failures = quiet > memory ? 0 : count
        }
        failures += 1
        let seconds = lock(failures) ?? 0
        try await connection.query("""
            UPDATE login_throttles SET failures = \(failures), updated_at = now(),
                locked_until = CASE WHEN \(seconds) > 0 THEN now() + make_interval(secs => \(seconds)) ELSE locked_until END
            WHERE key = \(key)
            """, logger: logger)
        if seconds > 0 {
            logger.warning("login locked", metadata: ["security.event": "login_locked", "throttle.kind": "\(key.prefix { $0 != ":" })", "lock.seconds": "\(Int(seconds))"])
        }
    }
}

/// Limits on password-reset and verification requests: per account and per address, a fixed number
/// in a window, counted in `login_throttles` under their own keys.
public struct RecoveryThrottlePolicy: Sendable, Equatable {
    /// Reset or verification emails one account may trigger per window.
    public var perAccount = 3
    /// Reset/verification requests and token confirmations one address may make per window.
    public var perAddress = 30
    public var window: TimeInterval = 900

    public init() {}

    public init(_ config: ConfigReader) throws {
        perAccount = try config.int("IDENTITY_RECOVERY_ACCOUNT_REQUESTS", default: 3, range: 1...1000)
        perAddress = try config.int("IDENTITY_RECOVERY_ADDRESS_REQUESTS", default: 30, range: 1...1_000_000)
    }
}

struct RecoveryThrottle: Sendable {
    let client: PostgresClient
    let policy: RecoveryThrottlePolicy
    static let throttled = Counter(label: "identity_recovery_throttled_total")

    /// Counts one request against each key (atomically, one statement per key); a 429 with
    /// `Retry-After` once a key is over its limit in the current window.
    func take(account: String?, address: String?, purpose: String, context: OperationContext) async throws {
        let logger = context.logger
        var keys: [(String, Int)] = []
        if let account { keys.append(("\(purpose):" + LoginThrottle.accountKey(account), policy.perAccount)) }
        if let address { keys.append(("\(purpose):address:\(address)", policy.perAddress)) }
        for (key, limit) in keys {
            let rows = try await client.query("""
                INSERT INTO login_throttles (key, failures, window_started_at, updated_at) VALUES (\(key), 1, now(), now())
                ON CONFLICT (key) DO UPDATE SET
                    failures = CASE WHEN login_throttles.window_started_at < now() - make_interval(secs => \(policy.window))
                                    THEN 1 ELSE login_throttles.failures + 1 END,
                    window_started_at = CASE WHEN login_throttles.window_started_at < now() - make_interval(secs => \(policy.window))
                                             THEN now() ELSE login_throttles.window_started_at END,
                    updated_at = now()
                RETURNING failures, EXTRACT(EPOCH FROM window_started_at + make_interval(secs => \(policy.window)) - now())::float8
                """, logger: logger)
            for try await (count, remaining) in rows.decode((Int, Double).self) where count > limit {
                Self.throttled.increment()
                let seconds = max(1, Int(remaining.rounded(.up)))
                logger.info("recovery request throttled", metadata: ["security.event": "recovery_throttled", "purpose": "\(purpose)"])
                throw Problem(.rateLimited, "Too many requests; retry after \(seconds) s.", typeSlug: "recovery-throttled",
                              headers: [.retryAfter: "\(seconds)"])
            }
        }
    }
}
