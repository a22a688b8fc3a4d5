import Foundation
import HTTPTypes
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import Platform
import ServiceLifecycle

/// What every connection shares: settings, verifier, limits, upstream pools, documents, metrics.
/// Immutable after start; the mutable parts (limiters, pools, caches) are thread-safe themselves.
final class GatewayCore: Sendable {
    let settings: GatewaySettings
    let verifier: AccessTokenVerifier
    let keys: RemoteKeySource
    let registry: PrometheusRegistryEmitter
    let authLimiter: RateLimiter
    let defaultLimiter: RateLimiter
    let revocations: RevocationCheck?
    let apiDocuments: ApiDocuments
    let pools: [String: UpstreamPool]
    let metrics = GatewayMetrics()
    let logger: Logger
    /// One line per request; off when `LOG_LEVEL` is above info.
    let accessLog: FixedFieldLog

    init(settings: GatewaySettings, verifier: AccessTokenVerifier, keys: RemoteKeySource, registry: PrometheusRegistryEmitter,
         revocations: RevocationCheck?, apiDocuments: ApiDocuments, pools: [String: UpstreamPool], logger: Logger,
         accessLog: FixedFieldLog) {
        self.settings = settings
        self.verifier = verifier
        self.keys = keys
        self.registry = registry
        self.authLimiter = RateLimiter(policy: settings.authRateLimit)
        self.defaultLimiter = RateLimiter(policy: settings.defaultRateLimit)
        self.revocations = revocations
        self.apiDocuments = apiDocuments
        self.pools = pools
        self.logger = logger
        self.accessLog = accessLog
    }

    /// `/health/ready`: identity's keys are loaded and, when revocations are on, every revocation
    /// that existed at the start has been read (a fresh replica would otherwise accept revoked tokens).
    func readiness() -> (ready: Bool, checks: [String: String]) {
        var checks = ["jwks": keys.hasKeys]
        if let revocations { checks["revocations"] = revocations.isCaughtUp() }
        return (checks.values.allSatisfy { $0 }, checks.mapValues { $0 ? "ok" : "fail" })
    }

    enum TokenCheck {
        case subject(String)
        case refused(Problem)
    }

    /// The verdict on a verified token's claims: revoked tokens are refused from memory.
    func check(_ claims: AccessTokenClaims, logger: Logger) -> TokenCheck {
        if let revocation = revocations?.list.revocation(subject: claims.sub, sessionId: claims.sid, issuedAt: claims.iat) {
            metrics.tokensRevoked.increment()
            logger.debug("token refused", metadata: ["reason": "revoked", "revocation": "\(revocation.rawValue)", "user.id": "\(claims.sub)"])
            return .refused(Self.invalidToken)
        }
        return .subject(claims.sub)
    }

    /// The subject of a valid, unrevoked bearer token in `authorization`, or a 401 problem.
    func authenticate(_ authorization: String?, logger: Logger) async throws -> String {
        guard let authorization, let token = BearerToken.parse(authorization) else { throw Self.missingToken }
        let claims: AccessTokenClaims
        do {
            claims = try await verifier.verify(token)
        } catch {
            logger.debug("token refused", metadata: ["reason": "\(error)"])
            throw Self.invalidToken
        }
        switch check(claims, logger: logger) {
        case .subject(let subject): return subject
        case .refused(let problem): throw problem
        }
    }

    static let missingToken = Problem(.unauthorized, "A valid access token is required.", headers: [.wwwAuthenticate: "Bearer"])
    static let invalidToken = Problem(.unauthorized, "The access token is not valid.", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
}

/// Emits the Prometheus text (a closure, so the core does not depend on the registry type).
struct PrometheusRegistryEmitter: Sendable {
    let emit: @Sendable (inout [UInt8]) -> Void
}

/// Idle keep-alive connections to upstream endpoints, one set per event loop: a request's
/// upstream connection lives on the same thread as its client connection, so bytes move between
/// them without a thread hop or a lock.
final class UpstreamConnections: @unchecked Sendable {
    /// Per event loop; touched only on that loop (the dictionary itself under the lock).
    final class LoopConnections {
        var idle: [String: [Channel]] = [:]
    }

    private let lock = NIOLock()
    private var loops: [ObjectIdentifier: LoopConnections] = [:]
    static let maximumIdlePerEndpoint = 128

    func connections(for loop: any EventLoop) -> LoopConnections {
        lock.withLock {
            let key = ObjectIdentifier(loop)
            if let existing = loops[key] { return existing }
            let created = LoopConnections()
            loops[key] = created
            return created
        }
    }
}

/// Serves HTTP/1.1 with SwiftNIO directly and proxies with streaming in both directions.
struct GatewayServer: Service {
    let core: GatewayCore
    let host: String
    let port: Int
    let group: MultiThreadedEventLoopGroup
    let onRunning: @Sendable (Int) -> Void

    func run() async throws {
        let quiesce = ServerQuiescingHelper(group: group)
        let core = self.core
        let upstreamConnections = UpstreamConnections()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // A connection silent this long is closed: an idle keep-alive connection, or a
                    // client that stopped sending in the middle of a request (slowloris).
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: core.settings.clientIdleTimeout))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        GatewayConnectionHandler(core: core, connections: upstreamConnections.connections(for: channel.eventLoop)))
                }
            }
        let server = try await bootstrap.bind(host: host, port: port).get()
        onRunning(server.localAddress?.port ?? port)
        await withGracefulShutdownHandler {
            try? await server.closeFuture.get()
        } onGracefulShutdown: {
            // Stop accepting; every connection finishes its current request, then closes.
            quiesce.initiateShutdown(promise: nil)
        }
    }
}

/// One client connection: routes, authenticates and proxies each request in turn (NIO's
/// pipelining helper hands over one request at a time). Runs entirely on the connection's loop.
final class GatewayConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// One request in flight.
    final class Exchange {
        let head: HTTPRequestHead
        let path: String
        let requestId: String
        let traceparent: TraceParent
        let started: NIODeadline
        var route: Route?
        var subject: String?
        private let baseLogger: Logger
        /// Built only when something logs about this request (most requests log only the access line).
        lazy var logger: Logger = {
            var logger = baseLogger
            logger[metadataKey: "request.id"] = .string(requestId)
            logger[metadataKey: "trace.id"] = .string(traceparent.traceId)
            return logger
        }()
        var bodyLimit: Int
        var bodyBytes = 0
        var requestEnded = false
        /// Body parts received before the upstream connection was ready.
        var pending: [ByteBuffer] = []
        /// HTTP/1 frames a TRACE without a body (NIO's encoder drops its `Content-Length`), so a
        /// body sent with one is read and dropped here: written upstream unframed it would be read
        /// there as the start of another request, smuggled past the gateway.
        var forwardsBody: Bool { head.method != .TRACE }
        var upstream: UpstreamHandler?
        var endpoint: UpstreamPool.Endpoint?
        var permit: CircuitBreaker.Permit?
        var attempt = 0
        var responseStarted = false
        var status: Int = 0
        var upstreamCacheControl = false
        /// Who the client is and how it reached us (trusted proxies considered).
        var forwarded = ForwardedHeaders.Values(forwardedFor: "unknown", proto: "http", host: nil, clientAddress: "unknown")
        /// A CORS preflight answered here: its own Access-Control-* headers are the answer.
        var isPreflight = false
        /// The rate limiter's answer, reported in `RateLimit-*` headers.
        var rateLimit: RateLimiter.Decision?
        var timeout: Scheduled<Void>?
        var deadline: NIODeadline
        /// The access log line and metrics were written.
        var recorded = false

        init(head: HTTPRequestHead, path: String, requestId: String, traceparent: TraceParent, logger: Logger, bodyLimit: Int, deadline: NIODeadline) {
            self.head = head
            self.path = path
            self.requestId = requestId
            self.traceparent = traceparent
            self.started = .now()
            self.baseLogger = logger
            self.bodyLimit = bodyLimit
            self.deadline = deadline
        }
    }

    enum State {
        case idle
        /// Answered early (an error, a document): the rest of the request body is read and dropped.
        case discarding(Exchange)
        /// Waiting for an asynchronous token check or the upstream connection.
        case preparing(Exchange)
        /// Streaming the request to the upstream and its answer back.
        case proxying(Exchange)
    }

    let core: GatewayCore
    let connections: UpstreamConnections.LoopConnections
    private var state = State.idle
    private var context: ChannelHandlerContext?
    private var clientAddress: String?

    init(core: GatewayCore, connections: UpstreamConnections.LoopConnections) {
        self.core = core
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        clientAddress = context.channel.remoteAddress?.ipAddress
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The client went away: an upstream connection mid-request cannot be reused.
        switch state {
        case .proxying(let exchange), .preparing(let exchange):
            exchange.timeout?.cancel()
            exchange.upstream?.abandon()
            exchange.permit?.cancel()
        case .idle, .discarding:
            break
        }
        state = .idle
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's protocol error handler has already answered a request that does not parse with a
        // bare 400 and closed; the log says why, so a client's framing problem can be found.
        if let parse = error as? HTTPParserError {
            core.logger.info("malformed request from client", metadata: ["error": "\(parse)", "client.address": "\(clientAddress ?? "-")"])
        }
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            switch state {
            case .idle, .discarding:
                context.close(promise: nil)
            case .preparing(let exchange), .proxying(let exchange):
                // Waiting on the upstream is the route timeout's business; waiting on the client is not.
                if !exchange.requestEnded {
                    exchange.logger.info("client too slow; connection closed", metadata: ["http.route": "\(exchange.route?.prefix ?? "-")"])
                    exchange.upstream?.abandon()
                    exchange.permit?.cancel()
                    if exchange.responseStarted {
                        context.close(promise: nil)
                    } else {
                        fail(exchange, Problem(.requestTimeout, "The request was not received in time."), context: context, close: true)
                    }
                }
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Backpressure: read from the upstream only while the client keeps up.
        if case .proxying(let exchange) = state {
            exchange.upstream?.setAutoRead(context.channel.isWritable)
        }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            begin(head, context: context)
        case .body(let buffer):
            body(buffer, context: context)
        case .end:
            end(context: context)
        }
    }

    // MARK: - request

    private func begin(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let requestId = RequestIds.make()
        let traceparent = head.headers.first(name: "traceparent").flatMap(TraceParent.init) ?? TraceParent.make()
        let path = Self.path(of: head.uri)
        let route = core.settings.routes.route(for: path)
        let limit = route?.maxBodyBytes ?? core.settings.maxBodyBytes
        let timeout = route?.timeoutMilliseconds.map { TimeAmount.milliseconds(Int64($0)) }
            ?? .nanoseconds(Int64(core.settings.upstreamTimeout.components.seconds) * 1_000_000_000
                            + core.settings.upstreamTimeout.components.attoseconds / 1_000_000_000)
        let exchange = Exchange(head: head, path: path, requestId: requestId, traceparent: traceparent, logger: core.logger,
                                bodyLimit: limit, deadline: .now() + timeout)
        exchange.route = route
        let settings = core.settings
        exchange.forwarded = settings.forwarded.compute(
            peer: clientAddress, clientForwardedFor: Self.joined(head.headers, "x-forwarded-for"),
            clientForwardedProto: head.headers.first(name: "x-forwarded-proto"), clientForwardedHost: head.headers.first(name: "x-forwarded-host"),
            host: head.headers.first(name: "host"), tls: false)

        guard settings.headerLimits.check(head.headers) else {
            fail(exchange, Problem(.headersTooLarge, "The request headers exceed \(settings.headerLimits.maxBytes) bytes or \(settings.headerLimits.maxCount) fields."),
                 context: context, close: true)
            return
        }
        if head.method == .OPTIONS, settings.cors.isEnabled || head.headers.contains(name: "origin") {
            switch settings.cors.preflight(origin: head.headers.first(name: "origin"),
                                           requestMethod: head.headers.first(name: "access-control-request-method"),
                                           requestHeaders: Self.joined(head.headers, "access-control-request-headers")) {
            case .notCors:
                break
            case .allowed(let fields):
                exchange.isPreflight = true
                var headers = HTTPHeaders(fields)
                headers.add(name: "cache-control", value: "no-store")
                answer(exchange, LocalAnswer(status: .noContent, headers: headers, body: nil), context: context)
                return
            case .refused(let reason):
                let why = switch reason {
                case .originNotAllowed: "the origin is not on the allow-list"
                case .methodNotAllowed: "the method is not allowed"
                case .headersNotAllowed: "a requested header is not allowed"
                }
                fail(exchange, Problem(.forbidden, "This cross-origin request is refused: \(why).", typeSlug: "cors-refused"), context: context)
                return
            }
        }
        if let local = localAnswer(exchange) {
            answer(exchange, local, context: context)
            return
        }
        if Self.isLocalPath(path) {
            // The gateway's own resources take GET and HEAD only (RFC 9110: 405 names what they take).
            fail(exchange, Problem(.methodNotAllowed, "\(head.method.rawValue) is not supported here; use GET or HEAD.",
                                   headers: [.allow: "GET, HEAD"]), context: context)
            return
        }
        guard HeaderPolicy.isSafePath(path) else {
            fail(exchange, Problem(.malformedRequest, "The path contains dot segments or encoded separators."), context: context)
            return
        }
        guard let route, let pool = core.pools[route.upstream] else {
            fail(exchange, Problem(.notFound, "No resource at this path."), context: context)
            return
        }
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limit {
            // Refused before reading the body; the connection closes so the rest is never read.
            fail(exchange, Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes."), context: context, close: true)
            return
        }
        state = .preparing(exchange)
        let anonymous = route.access == .public || (route.access == .optional && !head.headers.contains(name: "authorization"))
        guard !anonymous else {
            // Anonymous: one bucket per client address.
            if admit(exchange, key: "address:" + exchange.forwarded.clientAddress, context: context) {
                connect(exchange, pool: pool, context: context)
            }
            return
        }
        guard let header = head.headers.first(name: "authorization"), let token = BearerToken.parse(header) else {
            // Requests without a usable token count against their address, so they cannot flood either.
            if admit(exchange, key: "address:" + exchange.forwarded.clientAddress, context: context) {
                fail(exchange, GatewayCore.missingToken, context: context)
            }
            return
        }
        if let claims = core.verifier.verifiedBefore(token) {
            authenticated(exchange, core.check(claims, logger: exchange.logger), pool: pool, context: context)
            return
        }
        // A token not seen before: the signature check may need identity's keys (asynchronous).
        let core = self.core
        let requestLogger = exchange.logger
        let bound = NIOLoopBound((self, context, exchange), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        Task {
            let verdict: GatewayCore.TokenCheck
            do {
                verdict = .subject(try await core.authenticate(header, logger: requestLogger))
            } catch let problem as Problem {
                verdict = .refused(problem)
            } catch {
                verdict = .refused(GatewayCore.invalidToken)
            }
            loop.execute {
                let (handler, context, exchange) = bound.value
                guard case .preparing(let current) = handler.state, current === exchange else { return }
                handler.authenticated(exchange, verdict, pool: pool, context: context)
            }
        }
    }

    private func authenticated(_ exchange: Exchange, _ verdict: GatewayCore.TokenCheck, pool: UpstreamPool, context: ChannelHandlerContext) {
        switch verdict {
        case .refused(let problem):
            if admit(exchange, key: "address:" + exchange.forwarded.clientAddress, context: context) {
                fail(exchange, problem, context: context)
            }
        case .subject(let subject):
            exchange.subject = subject
            // Signed in: one bucket per subject, wherever the requests come from.
            if admit(exchange, key: "subject:" + subject, context: context) {
                connect(exchange, pool: pool, context: context)
            }
        }
    }

    /// Takes a token from the route class's bucket for `key`; answers 429 when it is empty.
    private func admit(_ exchange: Exchange, key: String, context: ChannelHandlerContext) -> Bool {
        let auth = exchange.route?.rateLimitClass == "auth"
        let decision = auth ? core.authLimiter.take(key) : core.defaultLimiter.take(key)
        exchange.rateLimit = decision
        guard decision.allowed else {
            Counter(label: "gateway_rate_limited_total", dimensions: [("class", exchange.route?.rateLimitClass ?? "default")]).increment()
            fail(exchange, Problem(.rateLimited, "Too many requests; retry after \(decision.retryAfter) s.",
                                   headers: [.retryAfter: "\(decision.retryAfter)"]), context: context)
            return false
        }
        return true
    }

    private func body(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        switch state {
        case .idle, .discarding:
            return
        case .preparing(let exchange), .proxying(let exchange):
            exchange.bodyBytes += buffer.readableBytes
            if exchange.bodyBytes > exchange.bodyLimit {
                // Chunked past the limit: stop here, answer 413 if nothing was answered yet, close.
                exchange.upstream?.abandon()
                exchange.permit?.cancel()
                if exchange.responseStarted {
                    context.close(promise: nil)
                } else {
                    fail(exchange, Problem(.payloadTooLarge, "The request body exceeds \(exchange.bodyLimit) bytes."), context: context, close: true)
                }
                return
            }
            guard exchange.forwardsBody else { return }
            if case .proxying = state, let upstream = exchange.upstream {
                upstream.send(.body(.byteBuffer(buffer)))
            } else {
                exchange.pending.append(buffer)
            }
        }
    }

    private func end(context: ChannelHandlerContext) {
        switch state {
        case .idle:
            return
        case .discarding:
            state = .idle
        case .preparing(let exchange):
            exchange.requestEnded = true
        case .proxying(let exchange):
            exchange.requestEnded = true
            exchange.upstream?.send(.end(nil), flush: true)
        }
    }

    // MARK: - local answers

    struct LocalAnswer {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer?
    }

    /// Paths the gateway answers itself, whatever the route table says.
    static func isLocalPath(_ path: String) -> Bool {
        path == "/health/live" || path == "/health/ready" || path == "/metrics" || ApiDocuments.serves(path)
    }

    /// Health, metrics and the API documents, answered by the gateway itself.
    private func localAnswer(_ exchange: Exchange) -> LocalAnswer? {
        let method = exchange.head.method
        guard method == .GET || method == .HEAD else { return nil }
        switch exchange.path {
        case "/health/live":
            return LocalAnswer(status: .ok, headers: ["content-type": "application/json", "cache-control": "no-store"],
                               body: ByteBuffer(string: #"{"status":"ok"}"#))
        case "/health/ready":
            let (ready, checks) = core.readiness()
            let body = ["status": ready ? "ready" : "not_ready", "checks": checks] as [String: any Sendable]
            let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
            return LocalAnswer(status: ready ? .ok : .serviceUnavailable, headers: ["content-type": "application/json", "cache-control": "no-store"],
                               body: ByteBuffer(bytes: data))
        case "/metrics":
            var buffer: [UInt8] = []
            core.registry.emit(&buffer)
            return LocalAnswer(status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"], body: ByteBuffer(bytes: buffer))
        default:
            guard let document = core.apiDocuments.answer(path: exchange.path,
                                                                       ifNoneMatch: exchange.head.headers[canonicalForm: "if-none-match"].map(String.init))
            else { return nil }
            var headers = HTTPHeaders()
            for field in document.headers { headers.add(name: field.name.rawName, value: field.value) }
            return LocalAnswer(status: HTTPResponseStatus(statusCode: Int(document.status.code)), headers: headers, body: document.body)
        }
    }

    private func answer(_ exchange: Exchange, _ local: LocalAnswer, context: ChannelHandlerContext) {
        state = .discarding(exchange)
        var headers = local.headers
        respond(exchange, status: local.status, headers: &headers, body: local.body, context: context, close: false)
    }

    private func fail(_ exchange: Exchange, _ problem: Problem, context: ChannelHandlerContext, close: Bool = false) {
        if exchange.responseStarted {
            // The answer is already on its way: all that is left is to cut it short.
            finish(exchange, context: context, reusable: false)
            context.close(promise: nil)
            return
        }
        state = .discarding(exchange)
        var headers = HTTPHeaders()
        for field in problem.headers { headers.add(name: field.name.rawName, value: field.value) }
        headers.replaceOrAdd(name: "content-type", value: "application/problem+json")
        let body = problem.body(instance: exchange.path, requestId: exchange.requestId)
        respond(exchange, status: HTTPResponseStatus(statusCode: Int(problem.status.code)), headers: &headers,
                body: ByteBuffer(bytes: body), context: context, close: close)
    }

    /// Writes a complete answer made by the gateway itself.
    private func respond(_ exchange: Exchange, status: HTTPResponseStatus, headers: inout HTTPHeaders, body: ByteBuffer?,
                         context: ChannelHandlerContext, close: Bool) {
        exchange.timeout?.cancel()
        exchange.status = Int(status.code)
        exchange.responseStarted = true
        decorate(&headers, exchange: exchange, upstreamCacheControl: headers.contains(name: "cache-control"))
        headers.replaceOrAdd(name: "content-length", value: "\(body?.readableBytes ?? 0)")
        if close { headers.replaceOrAdd(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: status, headers: headers))), promise: nil)
        if let body, exchange.head.method != .HEAD, status != .notModified { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        record(exchange)
        if close {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else if exchange.requestEnded, case .discarding = state {
            state = .idle
        }
    }

    /// Headers every answer carries: the request id, security headers, and CORS (the gateway's
    /// alone: a service's own `Access-Control-*` headers never reach the browser).
    private func decorate(_ headers: inout HTTPHeaders, exchange: Exchange, upstreamCacheControl: Bool) {
        headers.replaceOrAdd(name: "x-request-id", value: exchange.requestId)
        if let limit = exchange.rateLimit {
            // RateLimit header fields (IETF httpapi draft): the bucket, what is left, seconds to refill.
            headers.replaceOrAdd(name: "ratelimit-limit", value: "\(limit.limit)")
            headers.replaceOrAdd(name: "ratelimit-remaining", value: "\(limit.remaining)")
            headers.replaceOrAdd(name: "ratelimit-reset", value: "\(limit.allowed ? limit.resetSeconds : limit.retryAfter)")
        }
        let settings = core.settings
        SecurityHeaders.apply(to: &headers, authenticated: exchange.head.headers.contains(name: "authorization"),
                              behindTLS: SecurityHeaders.isBehindTLS(configured: settings.behindTLS, forwardedProto: exchange.forwarded.proto),
                              upstreamCacheControl: upstreamCacheControl)
        if settings.cors.isEnabled, !exchange.isPreflight {
            for name in Set(headers.map(\.name)) where name.lowercased().hasPrefix("access-control-") { headers.remove(name: name) }
            settings.cors.addResponseHeaders(origin: exchange.head.headers.first(name: "origin"), to: &headers)
        }
    }

    // MARK: - upstream

    private func connect(_ exchange: Exchange, pool: UpstreamPool, context: ChannelHandlerContext) {
        exchange.attempt += 1
        switch pool.acquire(avoiding: exchange.endpoint) {
        case .refused(let retryAfter):
            fail(exchange, Problem(.serviceUnavailable, "The \(pool.name) service is failing; retry after \(retryAfter) s.",
                                   headers: [.retryAfter: "\(retryAfter)"]), context: context)
        case .granted(let endpoint, let permit):
            exchange.endpoint = endpoint
            exchange.permit = permit
            if exchange.timeout == nil {
                let bound = NIOLoopBound((self, context, exchange), eventLoop: context.eventLoop)
                exchange.timeout = context.eventLoop.scheduleTask(deadline: exchange.deadline) {
                    let (handler, context, exchange) = bound.value
                    handler.timedOut(exchange, context: context)
                }
            }
            let key = endpoint.address
            while var idle = connections.idle[key], let channel = idle.popLast() {
                connections.idle[key] = idle
                if channel.isActive, let handler = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) {
                    attach(exchange, handler, context: context)
                    return
                }
            }
            let bound = NIOLoopBound((self, context, exchange), eventLoop: context.eventLoop)
            ClientBootstrap(group: context.eventLoop)
                .connectTimeout(.milliseconds(Int64(core.settings.upstreamConnectTimeoutMilliseconds)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(UpstreamHandler(key: key))
                    }
                }
                .connect(host: endpoint.url.host ?? "127.0.0.1", port: endpoint.url.port ?? 80)
                .whenComplete { result in
                    let (handler, context, exchange) = bound.value
                    guard case .preparing(let current) = handler.state, current === exchange else {
                        if case .success(let channel) = result { channel.close(promise: nil) }
                        return
                    }
                    switch result {
                    case .success(let channel):
                        guard let upstream = try? channel.pipeline.syncOperations.handler(type: UpstreamHandler.self) else {
                            channel.close(promise: nil)
                            handler.upstreamFailed(exchange, .connectionFailed, pool: pool, context: context)
                            return
                        }
                        handler.attach(exchange, upstream, context: context)
                    case .failure:
                        handler.upstreamFailed(exchange, .connectionFailed, pool: pool, context: context)
                    }
                }
        }
    }

    /// Sends the request head and whatever body arrived so far; the rest streams as it comes.
    private func attach(_ exchange: Exchange, _ upstream: UpstreamHandler, context: ChannelHandlerContext) {
        upstream.owner = self
        upstream.exchange = exchange
        exchange.upstream = upstream
        state = .proxying(exchange)
        var head = HTTPRequestHead(version: .http1_1, method: exchange.head.method, uri: exchange.head.uri)
        head.headers = HeaderPolicy.upstreamHeaders(from: exchange.head.headers)
        head.headers.replaceOrAdd(name: "host", value: exchange.endpoint?.address ?? "upstream")
        head.headers.replaceOrAdd(name: "x-request-id", value: exchange.requestId)
        head.headers.replaceOrAdd(name: "traceparent", value: exchange.traceparent.child().description)
        if let client = exchange.head.headers.first(name: "x-request-id") {
            head.headers.replaceOrAdd(name: "x-client-request-id", value: String(client.prefix(128)))
        }
        head.headers.replaceOrAdd(name: "x-forwarded-for", value: exchange.forwarded.forwardedFor)
        if let host = exchange.forwarded.host { head.headers.replaceOrAdd(name: "x-forwarded-host", value: host) }
        head.headers.replaceOrAdd(name: "x-forwarded-proto", value: exchange.forwarded.proto)
        let hasBody = exchange.head.headers.contains(name: "content-length") || exchange.head.headers.contains(name: "transfer-encoding")
        if hasBody, let length = exchange.head.headers.first(name: "content-length") {
            head.headers.replaceOrAdd(name: "content-length", value: length)
        } else if hasBody {
            head.headers.replaceOrAdd(name: "transfer-encoding", value: "chunked")
        }
        upstream.send(.head(head), flush: false)
        for part in exchange.pending { upstream.send(.body(.byteBuffer(part)), flush: false) }
        exchange.pending.removeAll()
        if exchange.requestEnded {
            upstream.send(.end(nil), flush: true)
        } else {
            upstream.flush()
        }
    }

    private func timedOut(_ exchange: Exchange, context: ChannelHandlerContext) {
        guard case .proxying(let current) = state, current === exchange else {
            if case .preparing(let current) = state, current === exchange {
                exchange.permit?.record(.timedOut)
                fail(exchange, Problem(.gatewayTimeout, "The \(exchange.route?.upstream ?? "upstream") service did not answer in time."), context: context)
            }
            return
        }
        exchange.upstream?.abandon()
        if let endpoint = exchange.endpoint, let pool = exchange.route.flatMap({ core.pools[$0.upstream] }) {
            pool.record(endpoint, .timedOut, permit: exchange.permit)
            exchange.permit = nil
        }
        Counter(label: "gateway_upstream_errors_total", dimensions: [("upstream", exchange.route?.upstream ?? "-"), ("kind", "timeout")]).increment()
        fail(exchange, Problem(.gatewayTimeout, "The \(exchange.route?.upstream ?? "upstream") service did not answer in time."), context: context)
    }

    fileprivate func upstreamFailed(_ exchange: Exchange, _ outcome: UpstreamOutcome, pool: UpstreamPool, context: ChannelHandlerContext) {
        if let endpoint = exchange.endpoint { pool.record(endpoint, outcome, permit: exchange.permit) }
        exchange.permit = nil
        exchange.upstream = nil
        let method = HTTPRequest.Method(rawValue: exchange.head.method.rawValue) ?? .post
        // Only a request that never reached the upstream, of an idempotent method, whose body is
        // still here in full, goes to another attempt.
        if !exchange.responseStarted, exchange.bodyBytes == exchange.pending.reduce(0, { $0 + $1.readableBytes }),
           UpstreamPool.shouldRetry(method: method, failure: outcome, attempt: exchange.attempt, deadline: exchange.deadline) {
            state = .preparing(exchange)
            connect(exchange, pool: pool, context: context)
            return
        }
        Counter(label: "gateway_upstream_errors_total", dimensions: [("upstream", pool.name), ("kind", "\(outcome)")]).increment()
        exchange.logger.warning("upstream request failed", metadata: ["upstream": "\(pool.name)", "outcome": "\(outcome)"])
        fail(exchange, Problem(.badGateway, "The \(pool.name) service cannot be reached.", headers: [.retryAfter: "1"]), context: context)
    }

    // MARK: - upstream answers (called by UpstreamHandler on this loop)

    fileprivate func upstreamHead(_ head: HTTPResponseHead, exchange: Exchange) {
        guard let context, case .proxying(let current) = state, current === exchange else { return }
        exchange.timeout?.cancel()
        exchange.responseStarted = true
        exchange.status = Int(head.status.code)
        var headers = HeaderPolicy.downstream(from: head.headers)
        decorate(&headers, exchange: exchange, upstreamCacheControl: head.headers.contains(name: "cache-control"))
        if let length = head.headers.first(name: "content-length") {
            headers.replaceOrAdd(name: "content-length", value: length)
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: head.status, headers: headers))), promise: nil)
    }

    fileprivate func upstreamBody(_ buffer: ByteBuffer, exchange: Exchange) {
        guard let context, case .proxying(let current) = state, current === exchange else { return }
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    fileprivate func upstreamEnd(exchange: Exchange, reusable: Bool) {
        guard let context, case .proxying(let current) = state, current === exchange else { return }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if let endpoint = exchange.endpoint, let pool = exchange.route.flatMap({ core.pools[$0.upstream] }) {
            pool.record(endpoint, .answered(status: exchange.status), permit: exchange.permit)
            exchange.permit = nil
        }
        finish(exchange, context: context, reusable: reusable && exchange.requestEnded)
        state = exchange.requestEnded ? .idle : .discarding(exchange)
    }

    fileprivate func upstreamClosed(exchange: Exchange) {
        guard let context, case .proxying(let current) = state, current === exchange else { return }
        let pool = exchange.route.flatMap { core.pools[$0.upstream] }
        if exchange.responseStarted {
            // Cut off mid-answer: the client cannot get a complete response any more.
            if let endpoint = exchange.endpoint, let pool { pool.record(endpoint, .interrupted, permit: exchange.permit) }
            exchange.permit = nil
            record(exchange)
            context.close(promise: nil)
            state = .idle
        } else if let pool {
            // A kept-alive connection the upstream had closed, or a refused request: as if never sent.
            upstreamFailed(exchange, .connectionFailed, pool: pool, context: context)
        }
    }

    /// After the answer: the upstream connection goes back to the idle set when it can be reused.
    private func finish(_ exchange: Exchange, context: ChannelHandlerContext, reusable: Bool) {
        exchange.timeout?.cancel()
        if let upstream = exchange.upstream {
            upstream.owner = nil
            upstream.exchange = nil
            if reusable, let channel = upstream.channel, channel.isActive,
               (connections.idle[upstream.key]?.count ?? 0) < UpstreamConnections.maximumIdlePerEndpoint {
                connections.idle[upstream.key, default: []].append(channel)
            } else {
                upstream.abandon()
            }
            exchange.upstream = nil
        }
        if exchange.status != 0 { record(exchange) }
    }

    /// Metrics and the access log line, once per exchange.
    private func record(_ exchange: Exchange) {
        guard !exchange.recorded else { return }
        exchange.recorded = true
        let nanoseconds = (NIODeadline.now() - exchange.started).nanoseconds
        let routeLabel = exchange.route?.prefix
            ?? (exchange.path.hasPrefix("/health/") || exchange.path == "/metrics" || ApiDocuments.serves(exchange.path) ? exchange.path : "unmatched")
        core.metrics.record(route: routeLabel, method: exchange.head.method.rawValue, status: exchange.status, nanoseconds: nanoseconds)
        guard core.accessLog.isEnabled else { return }
        // Sorted by key, as a Logger line would be; never the token, the query or the body.
        core.accessLog.info("request", [
            "client.address": exchange.forwarded.clientAddress,
            "duration.ms": String(nanoseconds / 1_000_000),
            "http.method": exchange.head.method.rawValue,
            "http.route": routeLabel,
            "http.status": String(exchange.status),
            "request.id": exchange.requestId,
            "trace.id": exchange.traceparent.traceId,
            "upstream": exchange.route?.upstream ?? "-",
            "user.id": exchange.subject ?? "-",
        ])
    }

    /// Every value of a header that may be repeated, joined with commas (RFC 9110 §5.3).
    static func joined(_ headers: HTTPHeaders, _ name: String) -> String? {
        let values = headers[name]
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    static func path(of uri: String) -> String {
        if let query = uri.firstIndex(where: { $0 == "?" || $0 == "#" }) { return String(uri[..<query]) }
        return uri
    }

}

/// The client side of one upstream connection; hands the answer to the connection handler that
/// owns the current request (same event loop).
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let key: String
    weak var owner: GatewayConnectionHandler?
    var exchange: GatewayConnectionHandler.Exchange?
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    private var keepAlive = true

    init(key: String) {
        self.key = key
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func send(_ part: HTTPClientRequestPart, flush: Bool = true) {
        guard let context else { return }
        if flush {
            context.writeAndFlush(wrapOutboundOut(part), promise: nil)
        } else {
            context.write(wrapOutboundOut(part), promise: nil)
        }
    }

    func flush() {
        context?.flush()
    }

    func setAutoRead(_ on: Bool) {
        guard let channel else { return }
        channel.setOption(ChannelOptions.autoRead, value: on).whenFailure { _ in }
        if on { context?.read() }
    }

    /// Drops the connection: it is mid-request or its state is unknown.
    func abandon() {
        owner = nil
        exchange = nil
        context?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let owner, let exchange else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            owner.upstreamHead(head, exchange: exchange)
        case .body(let buffer):
            owner.upstreamBody(buffer, exchange: exchange)
        case .end:
            owner.upstreamEnd(exchange: exchange, reusable: keepAlive)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let owner, let exchange {
            self.owner = nil
            self.exchange = nil
            owner.upstreamClosed(exchange: exchange)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
