import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOConcurrencyHelpers
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
    }
}

/// The gateway's one responder: its own health and metrics, otherwise route, authenticate and proxy.
struct GatewayResponder: HTTPResponder {
    typealias Context = AppRequestContext

    let settings: GatewaySettings
    let verifier: AccessTokenVerifier
    let keys: RemoteKeySource
    let proxy: Proxy
    let registry: PrometheusCollectorRegistry
    let authLimiter: RateLimiter
    let defaultLimiter: RateLimiter
    /// Identity's revocations; nil when no Kafka is configured.
    let revocations: RevocationCheck?
    let metrics = GatewayMetrics()
    /// `GET /openapi.json` and `GET /docs`, loaded at start (see ApiDocuments).
    var apiDocuments: ApiDocuments? = nil

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        let requestId = RequestIds.make()
        let traceparent = request.headers[.traceContext].flatMap(TraceParent.init) ?? TraceParent.make()
        context.requestId = requestId
        context.logger[metadataKey: "request.id"] = .string(requestId)
        context.logger[metadataKey: "trace.id"] = .string(traceparent.traceId)
        let route = settings.routes.route(for: request.uri.path)
        var response: Response
        var subject: String?
        do {
            (response, subject) = try await handle(request, route: route, context: context, requestId: requestId, traceparent: traceparent)
        } catch {
            response = ProblemMiddleware<AppRequestContext>.problem(for: error, logger: context.logger)
                .response(instance: request.uri.path, requestId: requestId)
        }
        response.headers[.requestId] = requestId
        response.headers[.init("X-Content-Type-Options")!] = "nosniff"
        if request.headers[.authorization] != nil, response.headers[.cacheControl] == nil {
            response.headers[.cacheControl] = "no-store"
        }
        let elapsed = ContinuousClock.now - started
        let routeLabel = route?.prefix ?? (request.uri.path.hasPrefix("/health/") || request.uri.path == "/metrics" || ApiDocuments.serves(request.uri.path) ? request.uri.path : "unmatched")
        let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
        metrics.record(route: routeLabel, method: request.method.rawValue, status: Int(response.status.code), nanoseconds: nanoseconds)
        context.logger.info("request", metadata: [
            "http.method": "\(request.method)", "http.route": "\(routeLabel)", "http.status": "\(response.status.code)",
            "duration.ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
            "upstream": "\(route?.upstream ?? "-")", "user.id": "\(subject ?? "-")",
        ])
        return response
    }

    func handle(_ request: Request, route: Route?, context: Context, requestId: String, traceparent: TraceParent) async throws -> (Response, String?) {
        let path = request.uri.path
        if let document = apiDocuments?.response(to: request) { return (document, nil) }
        switch path {
        case "/health/live":
            return (try JSONResponse.make(["status": "ok"], cacheControl: "no-store"), nil)
        case "/health/ready":
            let (ready, checks) = readiness()
            let body = ["status": ready ? "ready" : "not_ready", "checks": checks] as [String: any Sendable]
            let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            return (Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                             body: .init(byteBuffer: ByteBuffer(bytes: data))), nil)
        case "/metrics":
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return (Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: buffer))), nil)
        default:
            break
        }
        guard HeaderPolicy.isSafePath(path) else { throw Problem(.malformedRequest, "The path contains dot segments or encoded separators.") }
        guard let route, let upstream = settings.routes.upstreams[route.upstream] else {
            throw Problem(.notFound, "No resource at this path.")
        }
        let client = context.clientAddress ?? "unknown"
        let limited = route.rateLimitClass == "auth" ? authLimiter.take(client) : defaultLimiter.take(client)
        guard limited.allowed else {
            Counter(label: "gateway_rate_limited_total", dimensions: [("class", route.rateLimitClass ?? "default")]).increment()
            throw Problem(.rateLimited, "Too many requests from this address; retry after \(limited.retryAfter) s.",
                          headers: [.retryAfter: "\(limited.retryAfter)", .init("RateLimit-Limit")!: "\(limited.limit)",
                                    .init("RateLimit-Remaining")!: "0", .init("RateLimit-Reset")!: "\(limited.retryAfter)"])
        }
        var subject: String?
        if route.access == .authenticated {
            subject = try await authenticate(request, logger: context.logger)
        }
        let response = try await proxy.forward(request, route: route, upstream: upstream, context: context, requestId: requestId, traceparent: traceparent, clientAddress: context.clientAddress)
        return (response, subject)
    }
}

/// What the responder needs of the revocation feed: the list, and whether it holds every
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

extension GatewayResponder {
    /// `/health/ready`: identity's keys are loaded and, when revocations are on, every revocation
    /// that existed at the start has been read (a fresh replica would otherwise accept revoked tokens).
    func readiness() -> (ready: Bool, checks: [String: String]) {
        var checks = ["jwks": keys.hasKeys]
        if let revocations { checks["revocations"] = revocations.isCaughtUp() }
        return (checks.values.allSatisfy { $0 }, checks.mapValues { $0 ? "ok" : "fail" })
    }

    /// The subject of the request's valid, unrevoked access token, or a 401 problem.
    func authenticate(_ request: Request, logger: Logger) async throws -> String {
        guard let header = request.headers[.authorization], let token = BearerToken.parse(header) else {
            throw Problem(.unauthorized, "A valid access token is required.", headers: [.wwwAuthenticate: "Bearer"])
        }
        let invalid = Problem(.unauthorized, "The access token is not valid.", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        let claims: AccessTokenClaims
        do {
            claims = try await verifier.verify(token)
        } catch {
            logger.debug("token refused", metadata: ["reason": "\(error)"])
            throw invalid
        }
        // A memory lookup: identity's revocations arrive as events, never through a call per request.
        if let revocation = revocations?.list.revocation(subject: claims.sub, sessionId: claims.sid, issuedAt: claims.iat) {
            metrics.tokensRevoked.increment()
            logger.debug("token refused", metadata: ["reason": "revoked", "revocation": "\(revocation.rawValue)", "user.id": "\(claims.sub)"])
            throw invalid
        }
        return claims.sub
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
    public static func buildApplication(config: ConfigReader, logger: Logger, httpClient: HTTPClient) throws -> some ApplicationProtocol {
        let settings = try GatewaySettings(config)
        let apiDocuments = try ApiDocuments.load()
        let registry = MetricsSetup.bootstrap()
        let keys = RemoteKeySource(url: settings.jwksURL, httpClient: httpClient, minimumRefreshInterval: .seconds(1), logger: logger)
        let verifier = AccessTokenVerifier(keys: keys, issuer: settings.tokenIssuer, audience: settings.tokenAudience, cache: VerifiedTokenCache())
        let proxy = Proxy(httpClient: httpClient, defaultTimeout: settings.upstreamTimeout, defaultMaxBodyBytes: settings.maxBodyBytes, logger: logger)
        var revocations: RevocationFeed?
        if let bootstrapServers = settings.kafkaBootstrapServers {
            revocations = try RevocationFeed(
                configuration: RevocationFeed.kafkaConfiguration(bootstrapServers: bootstrapServers, fetchWaitMaxMilliseconds: settings.kafkaFetchWaitMaxMilliseconds),
                list: RevocationList(), logger: logger)
        } else {
            logger.warning("token revocation disabled: KAFKA_BOOTSTRAP_SERVERS is not set; revoked tokens stay valid until they expire")
        }
        let responder = GatewayResponder(
            settings: settings, verifier: verifier, keys: keys, proxy: proxy, registry: registry,
            authLimiter: RateLimiter(policy: settings.authRateLimit), defaultLimiter: RateLimiter(policy: settings.defaultRateLimit),
            revocations: revocations.map(RevocationCheck.init), apiDocuments: apiDocuments)
        var services: [any Service] = [KeySetWarmer(keys: keys, logger: logger)]
        if let revocations { services.append(revocations) }
        return Application(
            responder: responder,
            configuration: .init(address: .hostname(settings.httpHost, port: settings.httpPort), serverName: nil),
            services: services,
            onServerRunning: { _ in logger.info("serving", metadata: ["http.port": "\(settings.httpPort)"]) },
            logger: logger)
    }

    public static func serve() async throws {
        let config = try ConfigReader()
        LoggingSetup.bootstrap(service: "gateway", reader: config)
        let logger = Logger(label: "gateway")
        let settings = try GatewaySettings(config)
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        clientConfiguration.timeout.connect = .milliseconds(Int64(settings.upstreamConnectTimeoutMilliseconds))
        // A refused connection fails the request at once instead of being retried until the connect timeout.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        clientConfiguration.decompression = .disabled
        clientConfiguration.redirectConfiguration = .disallow
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        do {
            let app = try buildApplication(config: config, logger: logger, httpClient: httpClient)
            var configuration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
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
