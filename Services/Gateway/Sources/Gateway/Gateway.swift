import AsyncHTTPClient
import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import Platform
import Prometheus
import ServiceLifecycle

/// The gateway's settings, from the environment (see the README's configuration table).
public struct GatewaySettings: Sendable {
    public var httpHost: String
    public var httpPort: Int
    public var routes: RouteTable
    public var jwksURL: String
    public var tokenIssuer: String
    public var tokenAudience: String
    public var upstreamTimeout: Duration
    public var upstreamConnectTimeoutMilliseconds: Int
    public var maxBodyBytes: Int
    public var shutdownGracePeriod: Duration
    public var authRateLimit: RateLimiter.Policy
    public var defaultRateLimit: RateLimiter.Policy
    /// Where identity's session revocations are read from; nil disables revocation checks.
    public var kafkaBootstrapServers: String?
    public var kafkaFetchWaitMaxMilliseconds: Int
    public var kafkaSecurity: KafkaSecurity
    /// A client connection that sends nothing for this long is closed (idle keep-alive, or a
    /// request whose head or body stalls).
    public var clientIdleTimeout: TimeAmount
    /// When an upstream address leaves the rotation and its circuit opens.
    public var upstreamPolicy: UpstreamPool.Policy
    public var healthCheckInterval: Duration
    public var cors: CorsPolicy
    public var forwarded: ForwardedHeaders
    public var headerLimits: HeaderLimits
    /// Clients reach the gateway over TLS (terminated in front of it): HSTS is sent.
    public var behindTLS: Bool

    public init(_ config: ConfigReader) throws {
        httpHost = config.string("HTTP_HOST", default: "127.0.0.1")
        httpPort = try config.int("HTTP_PORT", default: 8080, range: 1...65535)
        routes = try RouteTable.load(config)
        jwksURL = config.string("JWKS_URL", default: "http://127.0.0.1:8081/.well-known/jwks.json")
        tokenIssuer = config.string("JWT_ISSUER", default: "marketplace-identity")
        tokenAudience = config.string("JWT_AUDIENCE", default: "marketplace")
        upstreamTimeout = try config.duration(milliseconds: "UPSTREAM_TIMEOUT_MS", default: 10_000)
        upstreamConnectTimeoutMilliseconds = try config.int("UPSTREAM_CONNECT_TIMEOUT_MS", default: 1_000, range: 10...60_000)
        maxBodyBytes = try config.int("HTTP_MAX_BODY_BYTES", default: 1_048_576, range: 1_024...104_857_600)
        shutdownGracePeriod = try config.duration(milliseconds: "SHUTDOWN_GRACE_MS", default: 20_000)
        authRateLimit = RateLimiter.Policy(
            capacity: Double(try config.int("RATE_LIMIT_AUTH_BURST", default: 20, range: 1...1_000_000)),
            refillPerSecond: Double(try config.int("RATE_LIMIT_AUTH_PER_MINUTE", default: 30, range: 1...6_000_000)) / 60)
        defaultRateLimit = RateLimiter.Policy(
            capacity: Double(try config.int("RATE_LIMIT_BURST", default: 200, range: 1...1_000_000)),
            refillPerSecond: Double(try config.int("RATE_LIMIT_PER_SECOND", default: 100, range: 1...1_000_000)))
        kafkaBootstrapServers = config.string("KAFKA_BOOTSTRAP_SERVERS")
        kafkaFetchWaitMaxMilliseconds = try config.int("KAFKA_FETCH_WAIT_MAX_MS", default: 100, range: 1...30_000)
        kafkaSecurity = try KafkaSecurity(reader: config)
        clientIdleTimeout = .milliseconds(Int64(try config.int("HTTP_CLIENT_IDLE_TIMEOUT_MS", default: 30_000, range: 100...3_600_000)))
        upstreamPolicy = UpstreamPool.Policy(
            ejectAfterFailures: try config.int("UPSTREAM_EJECT_AFTER_FAILURES", default: 3, range: 1...1000),
            ejectionSeconds: Double(try config.int("UPSTREAM_EJECT_SECONDS", default: 10, range: 1...3600)),
            breaker: CircuitBreaker.Policy(
                consecutiveFailuresToOpen: try config.int("BREAKER_CONSECUTIVE_FAILURES", default: 5, range: 1...1000),
                openSeconds: Double(try config.int("BREAKER_OPEN_SECONDS", default: 10, range: 1...3600))))
        healthCheckInterval = try config.duration(milliseconds: "UPSTREAM_HEALTH_CHECK_INTERVAL_MS", default: 5_000)
        cors = try CorsPolicy(config)
        forwarded = try ForwardedHeaders(config)
        headerLimits = try HeaderLimits(config)
        behindTLS = try SecurityHeaders.configuredBehindTLS(config)
    }
}

/// What the gateway needs of the revocation feed: the list, and whether it holds every
/// revocation that existed when the gateway started.
struct RevocationCheck: Sendable {
    var list: RevocationList
    var isCaughtUp: @Sendable () -> Bool

    init(list: RevocationList, isCaughtUp: @escaping @Sendable () -> Bool) {
        self.list = list
        self.isCaughtUp = isCaughtUp
    }

    init(_ feed: RevocationFeed) {
        self.init(list: feed.list, isCaughtUp: { feed.isCaughtUp })
    }
}

/// Loads identity's JWKS at start (retrying until it answers, while public routes already work)
/// and then keeps it fresh.
struct KeySetWarmer: Service {
    let keys: RemoteKeySource
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await keys.refresh()  // periodic: leaves the unknown-kid budget untouched
                try? await Task.sleep(for: keys.hasKeys ? .seconds(60) : .seconds(1))
            }
        }
    }
}

public enum GatewayRuntime {
    public static func serve() async throws {
        let config = try ConfigReader()
        LoggingSetup.bootstrap(service: "gateway", reader: config)
        let logger = Logger(label: "gateway")
        let settings = try GatewaySettings(config)
        let apiDocuments = try ApiDocuments.load()
        let registry = MetricsSetup.bootstrap()
        // AsyncHTTPClient serves the gateway's own calls (identity's JWKS, health probes); client
        // requests are proxied by GatewayServer on the event loops directly.
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.timeout.connect = .milliseconds(Int64(settings.upstreamConnectTimeoutMilliseconds))
        clientConfiguration.redirectConfiguration = .disallow
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        do {
            let keys = RemoteKeySource(url: settings.jwksURL, httpClient: httpClient, minimumRefreshInterval: .seconds(1), logger: logger)
            let verifier = AccessTokenVerifier(keys: keys, issuer: settings.tokenIssuer, audience: settings.tokenAudience, cache: VerifiedTokenCache())
            var revocations: RevocationFeed?
            if let bootstrapServers = settings.kafkaBootstrapServers {
                revocations = try RevocationFeed(
                    configuration: RevocationFeed.kafkaConfiguration(bootstrapServers: bootstrapServers, fetchWaitMaxMilliseconds: settings.kafkaFetchWaitMaxMilliseconds,
                                                                     security: settings.kafkaSecurity.librdkafkaProperties),
                    list: RevocationList(), logger: logger)
            } else {
                logger.warning("token revocation disabled: KAFKA_BOOTSTRAP_SERVERS is not set; revoked tokens stay valid until they expire")
            }
            let pools = try settings.routes.endpoints.reduce(into: [String: UpstreamPool]()) { pools, entry in
                pools[entry.key] = try UpstreamPool(name: entry.key, urls: entry.value, policy: settings.upstreamPolicy, logger: logger)
            }
            let core = GatewayCore(settings: settings, verifier: verifier, keys: keys,
                                   registry: PrometheusRegistryEmitter { registry.emit(into: &$0) },
                                   revocations: revocations.map(RevocationCheck.init), apiDocuments: apiDocuments, pools: pools, logger: logger,
                                   accessLog: FixedFieldLog(label: "gateway", service: "gateway", reader: config))
            let server = GatewayServer(core: core, host: settings.httpHost, port: settings.httpPort, group: .singleton) { port in
                logger.info("serving", metadata: ["http.port": "\(port)"])
            }
            var services: [any Service] = [KeySetWarmer(keys: keys, logger: logger),
                                           ActiveHealthChecker(pools: Array(pools.values), interval: settings.healthCheckInterval,
                                                               httpClient: httpClient, logger: logger)]
            if let revocations { services.append(revocations) }
            services.append(server)
            var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            configuration.maximumGracefulShutdownDuration = settings.shutdownGracePeriod
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            try? await httpClient.shutdown()
            throw error
        }
        try await httpClient.shutdown()
    }
}

/// Request metrics per route, method and status. The metric objects are looked up once per
/// combination and reused: creating them goes through the registry's lock every time.
final class GatewayMetrics: Sendable {
    struct Key: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    struct Instruments: Sendable {
        var requests: Metrics.Counter
        var duration: Metrics.Timer
    }

    private let cache = NIOLockedValueBox<[Key: Instruments]>([:])
    /// Valid access tokens refused because identity revoked them.
    let tokensRevoked = Metrics.Counter(label: "gateway_tokens_revoked_total")

    func record(route: String, method: String, status: Int, nanoseconds: Int64) {
        let key = Key(route: route, method: method, status: status)
        let instruments = cache.withLockedValue { cache in
            if let existing = cache[key] { return existing }
            let created = Instruments(
                requests: Metrics.Counter(label: "gateway_requests_total", dimensions: [("route", route), ("method", method), ("status", "\(status)")]),
                duration: Metrics.Timer(label: "gateway_request_duration_seconds", dimensions: [("route", route), ("method", method)], preferredDisplayUnit: .seconds))
            cache[key] = created
            return created
        }
        instruments.requests.increment()
        instruments.duration.recordNanoseconds(nanoseconds)
    }
}
