import Foundation
import HTTPTypes
import NIOHTTP1
import Testing
@testable import Gateway
@testable import Platform

@Suite struct GatewayTests {
    func table(_ routes: [Route] = RouteTable.defaultRoutes) throws -> RouteTable {
        try RouteTable.load(ConfigReader(values: [:]))
    }

    @Test func longestPrefixWinsOnSegmentBoundaries() throws {
        let routes = try table()
        #expect(routes.route(for: "/v1/auth/login")?.upstream == "identity")
        #expect(routes.route(for: "/v1/auth/login")?.access == .public)
        #expect(routes.route(for: "/v1/users/me")?.access == .authenticated)
        #expect(routes.route(for: "/v1/orders")?.upstream == "orders")
        #expect(routes.route(for: "/v1/orders/0192f1a0")?.upstream == "orders")
        #expect(routes.route(for: "/v1/ordersx") == nil)
        #expect(routes.route(for: "/v1/plans")?.access == .public)
        #expect(routes.route(for: "/nothing") == nil)
        let nested = try RouteTable(routes: [
            Route(prefix: "/v1/a", upstream: "x", access: .authenticated),
            Route(prefix: "/v1/a/public", upstream: "x", access: .public),
        ], upstreams: ["x": URL(string: "http://127.0.0.1:1")!])
        #expect(nested.route(for: "/v1/a/public/doc")?.access == .public)
        #expect(nested.route(for: "/v1/a/private")?.access == .authenticated)
    }

    @Test func aBadRouteTableStopsTheGateway() throws {
        #expect(throws: RouteTableError.invalid("route /v1/x names unknown upstream nowhere")) {
            try RouteTable(routes: [Route(prefix: "/v1/x", upstream: "nowhere", access: .public)], upstreams: [:])
        }
        let expected = ConfigError.invalidValue(key: "UPSTREAM_ORDERS", expected: "distinct http://host:port addresses, comma-separated")
        for bad in ["ftp://x", "http://a:1,http://a:1", "http://a:1/prefix", "https://a:1", "http://a:1,,"] {
            #expect(throws: expected, "\(bad)") { try RouteTable.load(ConfigReader(values: ["UPSTREAM_ORDERS": bad])) }
        }
        let several = try RouteTable.load(ConfigReader(values: ["UPSTREAM_ORDERS": "http://10.0.0.5:8084, http://10.0.0.6:8084"]))
        #expect(several.endpoints["orders"]?.map(\.absoluteString) == ["http://10.0.0.5:8084", "http://10.0.0.6:8084"])
        #expect(throws: RouteTableError.unreadable("/nonexistent.json")) {
            try RouteTable.load(ConfigReader(values: ["ROUTES_FILE": "/nonexistent.json"]))
        }
    }

    @Test func clientSentInternalHeadersNeverReachAnUpstream() {
        let fields: HTTPHeaders = [
            "X-User-Id": "someone-else", "X-Internal-Role": "admin", "X-Forwarded-For": "10.0.0.1", "X-Request-Id": "mine",
            "Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "1", "Authorization": "Bearer t", "Accept": "application/json",
            "Host": "gateway", "Transfer-Encoding": "chunked", "TE": "trailers", "Forwarded": "for=1.2.3.4",
        ]
        let forwarded = HeaderPolicy.upstreamHeaders(from: fields).map { $0.name.lowercased() }
        #expect(Set(forwarded) == ["authorization", "accept"])
        let answered: HTTPHeaders = ["Content-Type": "application/json", "Connection": "close", "X-Request-Id": "upstream's", "Transfer-Encoding": "chunked"]
        #expect(HeaderPolicy.downstream(from: answered).map(\.name) == ["Content-Type"])
    }

    @Test func dotSegmentsAndEncodedSeparatorsAreRefused() {
        #expect(HeaderPolicy.isSafePath("/v1/orders/abc"))
        #expect(!HeaderPolicy.isSafePath("/v1/auth/../users/me"))
        #expect(!HeaderPolicy.isSafePath("/v1/auth/%2e%2e/users/me"))
        #expect(!HeaderPolicy.isSafePath("/v1/auth%2Fusers"))
        for unsafe in ["/v1/./orders", "/.", "/..", "/v1/..", "/v1/a%5Cb", "/v1/a%5cb", "/v1/a\\b", "/v1/%2E%2E/x"] {
            #expect(!HeaderPolicy.isSafePath(unsafe), "\(unsafe)")
        }
        for safe in ["/", "/v1/.well/x", "/.well-known/jwks.json", "/v1/...", "/v1/a%25b", "/v1/a%2", "/v1/orders?x=../"] {
            #expect(HeaderPolicy.isSafePath(safe), "\(safe)")
        }
    }
}

@Suite struct RateLimiterTests {
    final class Clock: @unchecked Sendable {
        var seconds: Double = 0
    }

    @Test func aBurstIsAllowedThenRefusedUntilRefilled() {
        let clock = Clock()
        let limiter = RateLimiter(policy: .init(capacity: 3, refillPerSecond: 0.5), now: { clock.seconds })
        #expect((1...3).allSatisfy { _ in limiter.take("1.2.3.4").allowed })
        let refused = limiter.take("1.2.3.4")
        #expect(!refused.allowed)
        #expect(refused.retryAfter == 2)
        #expect(limiter.take("5.6.7.8").allowed, "each address has its own bucket")
        clock.seconds = 2
        #expect(limiter.take("1.2.3.4").allowed)
        #expect(!limiter.take("1.2.3.4").allowed)
        clock.seconds = 100
        let full = limiter.take("1.2.3.4")
        #expect(full.remaining == 2, "a bucket never holds more than its capacity")
        #expect(full.resetSeconds == 2, "one token spent: full again after 1 / 0.5 s")
        #expect(limiter.take("5.6.7.8").resetSeconds == 2 && limiter.take("new").limit == 3)
    }

    @Test func memoryStaysBounded() {
        let clock = Clock()
        let limiter = RateLimiter(policy: .init(capacity: 1, refillPerSecond: 1), maxKeys: 100, now: { clock.seconds })
        for index in 0..<1_000 {
            clock.seconds = Double(index) / 100
            _ = limiter.take("client-\(index)")
        }
        #expect(!limiter.take("client-999").allowed, "a recent client keeps its state")
    }
}
