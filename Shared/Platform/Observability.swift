import Foundation
import Hummingbird
import Kafka
import Logging
import Metrics
import NIOConcurrencyHelpers
import PostgresNIO
import Prometheus

/// The process-wide Prometheus registry behind swift-metrics, served at `GET /metrics`.
public enum MetricsSetup {
    private static let lock = NIOLockedValueBox<PrometheusCollectorRegistry?>(nil)

    /// Bootstraps swift-metrics once per process and returns the registry to render.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        lock.withLockedValue { existing in
            if let existing { return existing }
            let registry = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.defaultDurationHistogramBuckets = [
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                .seconds(1), .seconds(2), .seconds(5), .seconds(10),
            ]
            MetricsSystem.bootstrap(factory)
            existing = registry
            return registry
        }
    }
}

public struct MetricsEndpoint {
    public static func add<Context: RequestContext>(to router: some RouterMethods<Context>, registry: PrometheusCollectorRegistry) {
        router.get("/metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16_384)
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}

/// One named readiness check; a failing check makes `/health/ready` answer 503.
public struct ReadinessCheck: Sendable {
    public var name: String
    public var check: @Sendable () async -> Bool

    public init(name: String, check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }

    /// Postgres answers a trivial query within two seconds.
    public static func postgres(_ client: PostgresClient, logger: Logger) -> ReadinessCheck {
        ReadinessCheck(name: "postgres") {
            await withTimeout(.seconds(2)) {
                try await Database.query(client, "SELECT 1", logger: logger) { rows in
                    for try await _ in rows.decode(Int.self) {}
                }
                return true
            } ?? false
        }
    }

    /// Every migration this build knows is applied. Once true it stays true for the process.
    public static func migrations(_ migrator: Migrator) -> ReadinessCheck {
        let applied = NIOLockedValueBox(false)
        return ReadinessCheck(name: "migrations") {
            if applied.withLockedValue({ $0 }) { return true }
            let done = await withTimeout(.seconds(2)) { try await migrator.pendingCount() == 0 } ?? false
            if done { applied.withLockedValue { $0 = true } }
            return done
        }
    }

    /// The Kafka client reaches a broker (metadata round trip), cached for a few seconds.
    public static func kafka(_ producer: KafkaProducer) -> ReadinessCheck {
        let cache = NIOLockedValueBox<(Bool, ContinuousClock.Instant)?>(nil)
        return ReadinessCheck(name: "kafka") {
            if let (value, at) = cache.withLockedValue({ $0 }), ContinuousClock.now - at < .seconds(5) { return value }
            let connected = await producer.isConnected(timeout: .seconds(2))
            cache.withLockedValue { $0 = (connected, .now) }
            return connected
        }
    }
}

/// Runs `operation`, giving up with nil after `timeout` or on error.
public func withTimeout<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async -> T? {
    // Not a task group: a group waits for all its children, so an operation that never returns
    // (a statement written to a connection Postgres closed) would hold the caller with it. The
    // first of the answer and the deadline resumes the caller; a stuck operation is left behind.
    let once = NIOLockedValueBox<CheckedContinuation<T?, Never>?>(nil)
    return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        once.withLockedValue { $0 = continuation }
        let work = Task { try? await operation() }
        Task {
            let value = await work.value
            once.withLockedValue { pending in pending?.resume(returning: value); pending = nil }
        }
        Task {
            try? await Task.sleep(for: timeout)
            work.cancel()
            once.withLockedValue { pending in pending?.resume(returning: nil); pending = nil }
        }
    }
}

public struct HealthEndpoints {
    struct Live: ResponseEncodable { var status = "ok" }
    struct Ready: Encodable { var status: String; var checks: [String: String] }

    public static func add<Context: RequestContext>(to router: some RouterMethods<Context>, checks: [ReadinessCheck]) {
        router.get("/health/live") { _, _ in Live() }
        router.get("/health/ready") { _, _ -> Response in
            let results = await withTaskGroup(of: (String, Bool).self) { group in
                for check in checks { group.addTask { (check.name, await check.check()) } }
                var results: [String: String] = [:]
                for await (name, ok) in group { results[name] = ok ? "ok" : "fail" }
                return results
            }
            let ready = results.values.allSatisfy { $0 == "ok" }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let body = (try? encoder.encode(Ready(status: ready ? "ready" : "not_ready", checks: results))) ?? Data()
            return Response(
                status: ready ? .ok : .serviceUnavailable,
                headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
    }
}
