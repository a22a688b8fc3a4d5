import HTTPTypes
import NIOHTTP1
import Testing
@testable import Gateway
@testable import Platform

/// Header lists as `name: value` lines, so whole answers compare in one expectation.
private func lines(_ headers: [(String, String)]) -> [String] {
    headers.map { "\($0.0): \($0.1)" }
}

private func lines(_ headers: HTTPHeaders) -> [String] {
    headers.map { "\($0.name): \($0.value)" }
}

/// The headers of an allowed preflight, or nil when it was not allowed.
private func allowed(_ decision: CorsPolicy.PreflightDecision) -> [String]? {
    if case .allowed(let headers) = decision { return lines(headers) }
    return nil
}

private func refusal(_ decision: CorsPolicy.PreflightDecision) -> CorsPolicy.PreflightRefusal? {
    if case .refused(let reason) = decision { return reason }
    return nil
}

private func isNotCors(_ decision: CorsPolicy.PreflightDecision) -> Bool {
    if case .notCors = decision { return true }
    return false
}

/// The configuration key a config error names, or nil for any other outcome.
private func failingKey(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch ConfigError.invalidValue(let key, _) {
        return key
    } catch {
        return "unexpected \(error)"
    }
}

/// The edge policies' tests, one suite per policy (`swift test --filter EdgePoliciesTests`).
@Suite enum EdgePoliciesTests {}

// MARK: - CORS

extension EdgePoliciesTests {
    @Suite struct Cors {
        static let app = "https://app.example.com"
        static let methods = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        static let exposed = "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, ETag, Location"

        func policy(_ values: [String: String]) throws -> CorsPolicy {
            try CorsPolicy(ConfigReader(values: values))
        }

        func listed() throws -> CorsPolicy {
            try policy(["CORS_ALLOWED_ORIGINS": "https://app.example.com, http://localhost:5173"])
        }

        @Test func withoutAnAllowListCorsIsOffAndPreflightsAreRefused() throws {
            let cors = try policy([:])
            #expect(cors.origins == .off)
            #expect(!cors.isEnabled)
            #expect(cors.responseHeaders(origin: Self.app).isEmpty)
            #expect(cors.responseHeaders(origin: nil).isEmpty)
            #expect(refusal(cors.preflight(origin: Self.app, requestMethod: "GET", requestHeaders: nil)) == .originNotAllowed)
            // An OPTIONS that is not a preflight is still an ordinary request.
            #expect(isNotCors(cors.preflight(origin: Self.app, requestMethod: nil, requestHeaders: nil)))
            #expect(isNotCors(cors.preflight(origin: nil, requestMethod: "GET", requestHeaders: nil)))
        }

        @Test func anAllowedOriginsPreflightIsAnsweredAtTheGateway() throws {
            let decision = try listed().preflight(origin: Self.app, requestMethod: "PATCH", requestHeaders: "content-type,authorization")
            #expect(allowed(decision) == [
                "Access-Control-Allow-Origin: https://app.example.com",
                "Vary: Origin",
                "Access-Control-Allow-Credentials: true",
                "Access-Control-Allow-Methods: \(Self.methods)",
                "Access-Control-Allow-Headers: Content-Type, Authorization",
                "Access-Control-Max-Age: 600",
            ])
            let local = try listed().preflight(origin: "http://localhost:5173", requestMethod: "DELETE", requestHeaders: nil)
            #expect(allowed(local)?.first == "Access-Control-Allow-Origin: http://localhost:5173")
            #expect(allowed(local)?.contains { $0.hasPrefix("Access-Control-Allow-Headers") } == false)
        }

        @Test(arguments: [
            "https://evil.example.com",
            "https://app.example.com.evil.example",
            "http://app.example.com",  // another scheme is another origin
            "https://app.example.com:8443",
            "https://APP.example.com",  // browsers send origins lowercase; anything else is not one of ours
            "https://app.example.com/",
            "null",
            "",
            "*",
        ])
        func otherOriginsAreRefused(origin: String) throws {
            let cors = try listed()
            #expect(refusal(cors.preflight(origin: origin, requestMethod: "GET", requestHeaders: nil)) == .originNotAllowed)
            #expect(lines(cors.responseHeaders(origin: origin)) == ["Vary: Origin"])
        }

        @Test(arguments: ["CONNECT", "TRACE", "HEAD", "patch", "get", "PROPFIND", ""])
        func methodsOutsideTheListAreRefused(method: String) throws {
            #expect(refusal(try listed().preflight(origin: Self.app, requestMethod: method, requestHeaders: nil)) == .methodNotAllowed)
        }

        @Test(arguments: CorsPolicy.allowedMethods)
        func everyListedMethodIsAllowed(method: String) throws {
            #expect(allowed(try listed().preflight(origin: Self.app, requestMethod: method, requestHeaders: nil)) != nil)
        }

        @Test func requestedHeadersAreMatchedCaseInsensitivelyAndAnsweredInOurSpelling() throws {
            let cors = try listed()
            func allowHeaders(_ requested: String?) -> String? {
                allowed(cors.preflight(origin: Self.app, requestMethod: "POST", requestHeaders: requested))?
                    .first { $0.hasPrefix("Access-Control-Allow-Headers: ") }
                    .map { String($0.dropFirst("Access-Control-Allow-Headers: ".count)) }
            }
            #expect(allowHeaders("AUTHORIZATION, If-Match ,\ttraceparent") == "Authorization, If-Match, traceparent")
            #expect(allowHeaders("idempotency-key,if-none-match,x-request-id,content-type")
                == "Idempotency-Key, If-None-Match, X-Request-Id, Content-Type")
            #expect(allowHeaders("authorization, Authorization,AUTHORIZATION") == "Authorization")
            #expect(allowHeaders("content-type,,") == "Content-Type")
            #expect(allowHeaders(nil) == nil)
            #expect(allowHeaders("") == nil)
            #expect(allowHeaders(" , ") == nil)
            // The whole answer is still allowed when no headers were asked for.
            #expect(allowed(cors.preflight(origin: Self.app, requestMethod: "POST", requestHeaders: "")) != nil)
        }

        @Test(arguments: ["x-user-id", "authorization, x-internal-role", "cookie", "authorizationx", "author", "content type", "x-forwarded-for,content-type"])
        func aHeaderOutsideTheListRefusesThePreflight(requested: String) throws {
            #expect(refusal(try listed().preflight(origin: Self.app, requestMethod: "POST", requestHeaders: requested)) == .headersNotAllowed)
        }

        @Test func anAllowedOriginsActualRequestGetsItselfCredentialsAndTheExposedHeaders() throws {
            #expect(lines(try listed().responseHeaders(origin: Self.app)) == [
                "Access-Control-Allow-Origin: https://app.example.com",
                "Access-Control-Allow-Credentials: true",
                "Access-Control-Expose-Headers: \(Self.exposed)",
                "Vary: Origin",
            ])
            // Without Origin the answer still varies by it, so a cache never mixes answers.
            #expect(lines(try listed().responseHeaders(origin: nil)) == ["Vary: Origin"])
        }

        @Test func withoutCredentialsNoCredentialsHeaderIsSent() throws {
            let cors = try policy(["CORS_ALLOWED_ORIGINS": Self.app, "CORS_ALLOW_CREDENTIALS": "false", "CORS_MAX_AGE_SECONDS": "0"])
            #expect(!cors.allowCredentials)
            #expect(lines(cors.responseHeaders(origin: Self.app)) == [
                "Access-Control-Allow-Origin: https://app.example.com",
                "Access-Control-Expose-Headers: \(Self.exposed)",
                "Vary: Origin",
            ])
            #expect(allowed(cors.preflight(origin: Self.app, requestMethod: "GET", requestHeaders: nil)) == [
                "Access-Control-Allow-Origin: https://app.example.com",
                "Vary: Origin",
                "Access-Control-Allow-Methods: \(Self.methods)",
                "Access-Control-Max-Age: 0",
            ])
        }

        @Test func theWildcardIsNeverSentWithCredentials() throws {
            // Credentials are on by default, so `*` alone is a configuration error.
            #expect(failingKey { _ = try policy(["CORS_ALLOWED_ORIGINS": "*"]) } == "CORS_ALLOWED_ORIGINS")
            #expect(failingKey { _ = try policy(["CORS_ALLOWED_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "true"]) } == "CORS_ALLOWED_ORIGINS")
            #expect(failingKey { _ = try CorsPolicy(allowedOrigins: ["*"], allowCredentials: true) } == "CORS_ALLOWED_ORIGINS")
            #expect(failingKey { _ = try policy(["CORS_ALLOWED_ORIGINS": "*, https://app.example.com", "CORS_ALLOW_CREDENTIALS": "false"]) } == "CORS_ALLOWED_ORIGINS")

            let any = try policy(["CORS_ALLOWED_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "false"])
            #expect(any.origins == .any)
            #expect(allowed(any.preflight(origin: "https://anyone.example", requestMethod: "PUT", requestHeaders: "if-match")) == [
                "Access-Control-Allow-Origin: *",
                "Access-Control-Allow-Methods: \(Self.methods)",
                "Access-Control-Allow-Headers: If-Match",
                "Access-Control-Max-Age: 600",
            ])
            #expect(lines(any.responseHeaders(origin: "https://anyone.example")) == [
                "Access-Control-Allow-Origin: *",
                "Access-Control-Expose-Headers: \(Self.exposed)",
            ])
            #expect(any.responseHeaders(origin: nil).isEmpty)
            #expect(refusal(any.preflight(origin: "https://anyone.example", requestMethod: "TRACE", requestHeaders: nil)) == .methodNotAllowed)
            #expect(refusal(any.preflight(origin: "https://anyone.example", requestMethod: "GET", requestHeaders: "cookie")) == .headersNotAllowed)
        }

        @Test func responseHeadersGoStraightIntoAResponsesFields() throws {
            var headers = HTTPHeaders([("Content-Type", "application/json"), ("Vary", "Accept-Encoding")])
            try listed().addResponseHeaders(origin: Self.app, to: &headers)
            #expect(lines(headers) == [
                "Content-Type: application/json",
                "Vary: Accept-Encoding",
                "Access-Control-Allow-Origin: https://app.example.com",
                "Access-Control-Allow-Credentials: true",
                "Access-Control-Expose-Headers: \(Self.exposed)",
                "Vary: Origin",
            ])
            var fields = HTTPFields()
            try listed().addResponseHeaders(origin: "https://evil.example", to: &fields)
            #expect(fields[.vary] == "Origin")
            #expect(fields[.accessControlAllowOrigin] == nil)
        }

        @Test func configuredOriginsAreNormalisedAsBrowsersSendThem() throws {
            let cors = try CorsPolicy(allowedOrigins: [
                " HTTPS://App.Example.COM:443 ", "http://localhost:80", "http://localhost:5173", "http://[0:0::1]:8080",
                "https://app.example.com", "http://127.0.0.1:3000",
            ])
            #expect(cors.origins == .list([
                "https://app.example.com", "http://localhost", "http://localhost:5173", "http://[::1]:8080", "http://127.0.0.1:3000",
            ]))
            #expect(allowed(cors.preflight(origin: "http://[::1]:8080", requestMethod: "GET", requestHeaders: nil)) != nil)
            #expect(allowed(cors.preflight(origin: "http://localhost", requestMethod: "GET", requestHeaders: nil)) != nil)
            #expect(refusal(cors.preflight(origin: "http://localhost:80", requestMethod: "GET", requestHeaders: nil)) == .originNotAllowed)
        }

        @Test(arguments: [
            "app.example.com", "https://app.example.com/", "https://app.example.com/app", "https://app.example.com?x=1",
            "https://app.example.com#top", "ftp://files.example.com", "ws://app.example.com", "https://*.example.com",
            "https://user@app.example.com", "https://app.example.com:0", "https://app.example.com:65536",
            "https://app.example.com:", "https://app.example.com:08443", "https://app.example.com:84a", "null", "https://",
            "https://app..example.com", "https://.example.com", "https://example.com.", "https://app_example.com",
            "https://[1.2.3.4]", "https://[::1", "https://[fe80::1%25eth0]", "https://app.example.com, ", ",https://app.example.com",
            "https://a.example.com,,https://b.example.com", "https://exämple.com", "https://app example.com",
        ])
        func anInvalidOriginStopsTheGateway(value: String) {
            #expect(failingKey { _ = try CorsPolicy(ConfigReader(values: ["CORS_ALLOWED_ORIGINS": value])) } == "CORS_ALLOWED_ORIGINS")
        }

        @Test func otherInvalidSettingsStopTheGateway() {
            #expect(failingKey { _ = try policy(["CORS_ALLOWED_ORIGINS": Self.app, "CORS_ALLOW_CREDENTIALS": "maybe"]) } == "CORS_ALLOW_CREDENTIALS")
            for age in ["-1", "86401", "ten"] {
                #expect(failingKey { _ = try policy(["CORS_ALLOWED_ORIGINS": Self.app, "CORS_MAX_AGE_SECONDS": age]) } == "CORS_MAX_AGE_SECONDS", "\(age)")
            }
            #expect(failingKey { _ = try CorsPolicy(allowedOrigins: [Self.app], maxAgeSeconds: 86_401) } == "CORS_MAX_AGE_SECONDS")
        }

        @Test func booleanSettingsAcceptTheUsualSpellings() throws {
            for (text, value) in [("false", false), ("FALSE", false), ("0", false), ("no", false), ("off", false),
                                  ("true", true), ("True", true), ("1", true), ("yes", true), ("on", true)] {
                #expect(try policy(["CORS_ALLOWED_ORIGINS": Self.app, "CORS_ALLOW_CREDENTIALS": text]).allowCredentials == value, "\(text)")
            }
            #expect(try policy(["CORS_ALLOWED_ORIGINS": Self.app]).allowCredentials)
            #expect(try policy(["CORS_ALLOWED_ORIGINS": Self.app, "CORS_MAX_AGE_SECONDS": "7200"]).maxAgeSeconds == 7200)
        }
    }
}

// MARK: - Security headers

extension EdgePoliciesTests {
    @Suite struct Security {
        struct Case: Sendable, CustomTestStringConvertible {
            var authenticated: Bool
            var behindTLS: Bool
            var upstreamCacheControl: Bool
            var testDescription: String { "authenticated \(authenticated), TLS \(behindTLS), upstream Cache-Control \(upstreamCacheControl)" }
        }

        static let matrix: [Case] = [false, true].flatMap { authenticated in
            [false, true].flatMap { behindTLS in
                [false, true].map { Case(authenticated: authenticated, behindTLS: behindTLS, upstreamCacheControl: $0) }
            }
        }

        @Test(arguments: matrix)
        func everyResponseGetsTheRightHeaders(_ c: Case) {
            var headers: [(String, String)] = [("Content-Type", "application/json")]
            SecurityHeaders.apply(to: &headers, authenticated: c.authenticated, behindTLS: c.behindTLS, upstreamCacheControl: c.upstreamCacheControl)
            var expected = [
                "Content-Type: application/json",
                "X-Content-Type-Options: nosniff",
                "Referrer-Policy: no-referrer",
                "X-Frame-Options: DENY",
            ]
            if c.behindTLS { expected.append("Strict-Transport-Security: max-age=31536000; includeSubDomains") }
            if c.authenticated, !c.upstreamCacheControl { expected.append("Cache-Control: no-store") }
            #expect(lines(headers) == expected)
        }

        @Test func theEdgesValuesReplaceAnUpstreamsAndAnUpstreamsCacheControlIsKept() {
            var headers = HTTPHeaders([
                ("x-frame-options", "SAMEORIGIN"), ("X-Content-Type-Options", "sniff"), ("referrer-policy", "unsafe-url"),
                ("Cache-Control", "private, max-age=60"), ("strict-transport-security", "max-age=0"),
            ])
            SecurityHeaders.apply(to: &headers, authenticated: true, behindTLS: true, upstreamCacheControl: false)
            #expect(headers["X-Frame-Options"] == ["DENY"])
            #expect(headers["X-Content-Type-Options"] == ["nosniff"])
            #expect(headers["Referrer-Policy"] == ["no-referrer"])
            #expect(headers["Strict-Transport-Security"] == ["max-age=31536000; includeSubDomains"])
            // A Cache-Control already there (the gateway's own answers) is never doubled or replaced.
            #expect(headers["Cache-Control"] == ["private, max-age=60"])
            #expect(headers.count == 5)

            var fields = HTTPFields()
            fields[.cacheControl] = "public, max-age=300"
            fields[HTTPField.Name("X-Frame-Options")!] = "SAMEORIGIN"
            SecurityHeaders.apply(to: &fields, authenticated: true, behindTLS: false, upstreamCacheControl: false)
            #expect(fields[.cacheControl] == "public, max-age=300")
            #expect(fields[values: HTTPField.Name("X-Frame-Options")!] == ["DENY"])
            #expect(fields[HTTPField.Name("Strict-Transport-Security")!] == nil)
        }

        @Test func behindTLSComesFromConfigOrTheSchemeTheRequestArrivedWith() throws {
            #expect(try SecurityHeaders.configuredBehindTLS(ConfigReader(values: [:])) == false)
            #expect(try SecurityHeaders.configuredBehindTLS(ConfigReader(values: ["GATEWAY_BEHIND_TLS": "true"])) == true)
            #expect(try SecurityHeaders.configuredBehindTLS(ConfigReader(values: ["GATEWAY_BEHIND_TLS": "0"])) == false)
            #expect(failingKey { _ = try SecurityHeaders.configuredBehindTLS(ConfigReader(values: ["GATEWAY_BEHIND_TLS": "sometimes"])) } == "GATEWAY_BEHIND_TLS")

            #expect(SecurityHeaders.isBehindTLS(configured: true, forwardedProto: "http"))
            #expect(SecurityHeaders.isBehindTLS(configured: false, forwardedProto: "https"))
            #expect(!SecurityHeaders.isBehindTLS(configured: false, forwardedProto: "http"))

            // Only a trusted proxy can say the client used https.
            let forwarded = ForwardedHeaders(trustedProxies: [AddressBlock("10.0.0.0/8")!])
            let viaProxy = forwarded.compute(peer: "10.0.0.2", clientForwardedFor: "203.0.113.9", clientForwardedProto: "https",
                                             clientForwardedHost: nil, host: "api.example.com", tls: false)
            #expect(SecurityHeaders.isBehindTLS(configured: false, forwardedProto: viaProxy.proto))
            let spoofed = forwarded.compute(peer: "203.0.113.9", clientForwardedFor: nil, clientForwardedProto: "https",
                                            clientForwardedHost: nil, host: "api.example.com", tls: false)
            #expect(!SecurityHeaders.isBehindTLS(configured: false, forwardedProto: spoofed.proto))
        }
    }
}

// MARK: - X-Forwarded-*

extension EdgePoliciesTests {
    @Suite struct Forwarded {
        typealias Values = ForwardedHeaders.Values

        func forwarded(_ trusted: String?) throws -> ForwardedHeaders {
            try ForwardedHeaders(ConfigReader(values: trusted.map { ["TRUSTED_PROXIES": $0] } ?? [:]))
        }

        /// A request from `peer` that claims everything a client could claim.
        func spoofed(_ policy: ForwardedHeaders, peer: String?, tls: Bool = false) -> Values {
            policy.compute(peer: peer, clientForwardedFor: "1.2.3.4, 10.0.0.1", clientForwardedProto: "https",
                           clientForwardedHost: "evil.example", host: "api.example.com", tls: tls)
        }

        @Test func withoutTrustedProxiesClientSentValuesAreIgnored() throws {
            let policy = try forwarded(nil)
            #expect(policy.trustedProxies.isEmpty)
            #expect(spoofed(policy, peer: "203.0.113.7") == Values(forwardedFor: "203.0.113.7", proto: "http", host: "api.example.com", clientAddress: "203.0.113.7"))
            #expect(spoofed(policy, peer: "203.0.113.7", tls: true).proto == "https")
            #expect(spoofed(policy, peer: "2001:db8::7").clientAddress == "2001:db8::7")
            #expect(spoofed(policy, peer: nil) == Values(forwardedFor: "unknown", proto: "http", host: "api.example.com", clientAddress: "unknown"))
        }

        @Test(arguments: ["198.51.100.1", "11.0.0.1", "9.255.255.255", "2001:db8::1", "::ffff:11.0.0.1", "not-an-address", "10.0.0.1:80"])
        func aPeerOutsideTheTrustedListIsTakenAtItsWord(peer: String) throws {
            let values = spoofed(try forwarded("10.0.0.0/8, fd00::/8"), peer: peer)
            #expect(values == Values(forwardedFor: peer, proto: "http", host: "api.example.com", clientAddress: peer))
        }

        @Test func aTrustedProxysChainIsWalkedFromTheRight() throws {
            let policy = try forwarded("10.0.0.0/8")
            let values = policy.compute(peer: "10.0.0.2", clientForwardedFor: "1.1.1.1, 203.0.113.9, 10.0.0.5", clientForwardedProto: "https",
                                        clientForwardedHost: "shop.example.com", host: "gateway.internal", tls: false)
            #expect(values == Values(forwardedFor: "203.0.113.9, 10.0.0.5, 10.0.0.2", proto: "https", host: "shop.example.com", clientAddress: "203.0.113.9"))
        }

        @Test func aClientCannotHideBehindATrustedLookingAddress() throws {
            // The client sent "10.0.0.9, 10.0.0.8"; the trusted load balancer appended the address it saw.
            let values = try forwarded("10.0.0.0/8").compute(peer: "10.0.0.2", clientForwardedFor: "10.0.0.9, 10.0.0.8, 198.51.100.23",
                                                             clientForwardedProto: nil, clientForwardedHost: nil, host: "api.example.com", tls: false)
            #expect(values.clientAddress == "198.51.100.23")
            #expect(values.forwardedFor == "198.51.100.23, 10.0.0.2")
        }

        @Test func whenEveryAddressIsTrustedTheLeftmostIsTheClient() throws {
            let values = try forwarded("10.0.0.0/8").compute(peer: "10.0.0.2", clientForwardedFor: "10.1.1.1,10.0.0.5",
                                                             clientForwardedProto: nil, clientForwardedHost: nil, host: nil, tls: false)
            #expect(values == Values(forwardedFor: "10.1.1.1, 10.0.0.5, 10.0.0.2", proto: "http", host: nil, clientAddress: "10.1.1.1"))
        }

        @Test func aTrustedPeerWithoutAChainIsTheClient() throws {
            let policy = try forwarded("10.0.0.0/8")
            for chain in [nil, "", " , ,"] as [String?] {
                let values = policy.compute(peer: "10.0.0.2", clientForwardedFor: chain, clientForwardedProto: nil, clientForwardedHost: nil, host: "h", tls: true)
                #expect(values == Values(forwardedFor: "10.0.0.2", proto: "https", host: "h", clientAddress: "10.0.0.2"), "\(String(describing: chain))")
            }
        }

        @Test func ipv6ChainsAndBlocks() throws {
            let policy = try forwarded("2001:db8:a::/48")
            let values = policy.compute(peer: "2001:db8:a::1", clientForwardedFor: "2001:DB8:0:0:0:0:0:0001, 2001:db8:a::7",
                                        clientForwardedProto: nil, clientForwardedHost: nil, host: nil, tls: false)
            #expect(values.clientAddress == "2001:db8::1")
            #expect(values.forwardedFor == "2001:db8::1, 2001:db8:a::7, 2001:db8:a::1")
            // Just outside the block.
            let outside = policy.compute(peer: "2001:db8:b::1", clientForwardedFor: "2001:db8::1", clientForwardedProto: nil,
                                         clientForwardedHost: nil, host: nil, tls: false)
            #expect(outside.clientAddress == "2001:db8:b::1")
        }

        @Test func portsBracketsMappedAddressesAndZonesAreUnderstood() throws {
            let policy = try forwarded("10.0.0.0/8, fe80::/10")
            func client(_ peer: String, _ chain: String) -> String {
                policy.compute(peer: peer, clientForwardedFor: chain, clientForwardedProto: nil, clientForwardedHost: nil, host: nil, tls: false).clientAddress
            }
            #expect(client("10.0.0.2", "[2001:db8::5]:443") == "2001:db8::5")
            #expect(client("10.0.0.2", "[2001:db8::5]") == "2001:db8::5")
            #expect(client("10.0.0.2", "198.51.100.4:5555") == "198.51.100.4")
            #expect(client("10.0.0.2", "::ffff:198.51.100.4") == "198.51.100.4")
            #expect(client("10.0.0.2", "[::ffff:c633:6404]:80") == "198.51.100.4")
            // A dual-stack socket reports IPv4 peers as mapped addresses; a link-local peer carries its zone.
            #expect(client("::ffff:10.0.0.2", "198.51.100.4") == "198.51.100.4")
            #expect(client("fe80::1%eth0", "198.51.100.4") == "198.51.100.4")
            #expect(client("fe80::1%", "198.51.100.4") == "fe80::1%")
        }

        @Test func garbageInATrustedChainEndsTheWalk() throws {
            let policy = try forwarded("10.0.0.0/8")
            func compute(_ chain: String) -> Values {
                policy.compute(peer: "10.0.0.2", clientForwardedFor: chain, clientForwardedProto: nil, clientForwardedHost: nil, host: nil, tls: false)
            }
            // The last address walked before the garbage is the client.
            #expect(compute("203.0.113.9, garbage, 10.0.0.5") == Values(forwardedFor: "10.0.0.5, 10.0.0.2", proto: "http", host: nil, clientAddress: "10.0.0.5"))
            // Garbage at the right: the peer is the client.
            for chain in ["203.0.113.9, unknown", "_hidden", "1.2.3.4 5.6.7.8", "010.0.0.1", "256.1.1.1", "1.2.3.4:http", "[::1",
                          "2001:db8::1:80x", "10.0.0.1/8", "10.0.0.1;proto=https", "for=192.0.2.60", "fe80::1%eth0"] {
                #expect(compute(chain) == Values(forwardedFor: "10.0.0.2", proto: "http", host: nil, clientAddress: "10.0.0.2"), "\(chain)")
            }
        }

        @Test func emptyListElementsAreSkipped() throws {
            let values = try forwarded("10.0.0.0/8").compute(peer: "10.0.0.2", clientForwardedFor: ",203.0.113.9,, 10.0.0.5 ,",
                                                             clientForwardedProto: nil, clientForwardedHost: nil, host: nil, tls: false)
            #expect(values == Values(forwardedFor: "203.0.113.9, 10.0.0.5, 10.0.0.2", proto: "http", host: nil, clientAddress: "203.0.113.9"))
        }

        @Test func everythingIsTrustedOnlyWhenConfiguredSo() throws {
            let policy = try forwarded("0.0.0.0/0, ::/0")
            #expect(spoofed(policy, peer: "198.51.100.1").clientAddress == "1.2.3.4")
            #expect(spoofed(policy, peer: "2001:db8::1").clientAddress == "1.2.3.4")
        }

        @Test func protoFromATrustedProxyIsHttpOrHttpsOnly() throws {
            let policy = try forwarded("10.0.0.0/8")
            func proto(_ value: String?, tls: Bool = false) -> String {
                policy.compute(peer: "10.0.0.2", clientForwardedFor: nil, clientForwardedProto: value, clientForwardedHost: nil, host: nil, tls: tls).proto
            }
            #expect(proto("https") == "https")
            #expect(proto(" HTTPS ") == "https")
            #expect(proto("http", tls: true) == "http")
            #expect(proto("Http", tls: true) == "http")
            for value in ["ftp", "https, http", "https;", "", "httpss", "wss", nil] as [String?] {
                #expect(proto(value) == "http", "\(String(describing: value))")
                #expect(proto(value, tls: true) == "https", "\(String(describing: value))")
            }
        }

        @Test func hostsAreValidatedBeforeTheyTravel() throws {
            let policy = try forwarded("10.0.0.0/8")
            func host(_ forwardedHost: String?, hostHeader: String? = "gateway.internal", peer: String = "10.0.0.2") -> String? {
                policy.compute(peer: peer, clientForwardedFor: nil, clientForwardedProto: nil, clientForwardedHost: forwardedHost, host: hostHeader, tls: false).host
            }
            #expect(host("shop.example.com:8443") == "shop.example.com:8443")
            #expect(host("[2001:db8::1]:443") == "[2001:db8::1]:443")
            #expect(host(String(repeating: "a", count: 255)) == String(repeating: "a", count: 255))
            for bad in ["", "a b", "evil.example/path", "a.example,b.example", "x\r\nSet-Cookie: a=b", "tab\there", "user@evil.example",
                        "a?b", "a#b", "a\\b", "exämple.com", "del\u{7F}", String(repeating: "a", count: 256), nil] as [String?] {
                #expect(host(bad) == "gateway.internal", "\(String(describing: bad))")
            }
            // The Host header itself is validated too, from trusted and untrusted peers alike.
            #expect(host(nil, hostHeader: "bad host") == nil)
            #expect(host("shop.example.com", hostHeader: "bad host", peer: "198.51.100.1") == nil)
            #expect(host(nil, hostHeader: nil) == nil)
        }

        @Test func trustedProxiesAreParsedFromConfig() throws {
            let policy = try forwarded(" 10.0.0.0/8,2001:db8::/32 , 192.0.2.7,::1 ")
            #expect(policy.trustedProxies.map(\.description) == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32", "::1/128"])
            #expect(try forwarded("").trustedProxies.isEmpty)
        }

        @Test(arguments: [
            "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "/8", "10.0.0.0/08", "10.0.0.0/-1", "10.0.0.0/8/9", "2001:db8::/129",
            "2001:db8::1/32", "fe80::1%eth0", "example.com", "[::1]", "10.0.0.0 /8", "10.0.0.0/8,", "10.0.0.0/8,,::1",
            "10.0.0.1:80", "1.2.3", "*", "10.0.0.0/ 8",
        ])
        func anInvalidTrustedProxyStopsTheGateway(value: String) {
            #expect(failingKey { _ = try forwarded(value) } == "TRUSTED_PROXIES")
        }
    }
}

// MARK: - Addresses

extension EdgePoliciesTests {
    @Suite struct Addresses {
        @Test(arguments: [
            ("1.2.3.4", "1.2.3.4"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
            ("::", "::"), ("::1", "::1"), ("1::", "1::"), ("2001:db8::1", "2001:db8::1"),
            ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"), ("1:0:0:0:0:0:0:0", "1::"), ("0:0:0:0:0:0:0:1", "::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"), ("::FFFF:102:304", "1.2.3.4"), ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"), ("::1.2.3.4", "::102:304"), ("1::2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
        ])
        func addressesParseAndPrintCanonically(text: String, canonical: String) {
            #expect(IPAddress.parse(text)?.description == canonical)
        }

        @Test(arguments: [
            "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1..2.3", "1.2.3.4 ", " 1.2.3.4", "a.b.c.d", "1.2.3.-4",
            ":::", ":", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", ":1::", "1:", "1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7:1.2.3.4",
            "::1.2.3", "::1.2.3.4:5", "::1a.2.3.4", "g::1", "fe80::1%eth0", "[::1]", "1:2:3:4:5:6:7", "::ffff:256.1.1.1",
        ])
        func malformedAddressesAreRefused(text: String) {
            #expect(IPAddress.parse(text) == nil)
        }

        @Test func blocksContainExactlyTheirAddresses() throws {
            func block(_ text: String) throws -> AddressBlock { try #require(AddressBlock(text)) }
            func address(_ text: String) throws -> IPAddress { try #require(IPAddress.parse(text)) }
            let ten = try block("10.0.0.0/8")
            #expect(ten.contains(try address("10.0.0.0")))
            #expect(ten.contains(try address("10.255.255.255")))
            #expect(!ten.contains(try address("11.0.0.0")))
            #expect(!ten.contains(try address("9.255.255.255")))
            #expect(!ten.contains(try address("::a00:1")))  // an IPv6 address is never in an IPv4 block
            #expect(ten.contains(try address("::ffff:10.1.2.3")))
            let one = try block("192.0.2.7")
            #expect(one.contains(try address("192.0.2.7")))
            #expect(!one.contains(try address("192.0.2.6")))
            let odd = try block("192.0.2.128/25")
            #expect(odd.contains(try address("192.0.2.255")))
            #expect(!odd.contains(try address("192.0.2.127")))
            let v6 = try block("2001:db8::/32")
            #expect(v6.contains(try address("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")))
            #expect(!v6.contains(try address("2001:db9::")))
            #expect(!v6.contains(try address("32.1.13.184")))
            let everything = try block("0.0.0.0/0")
            #expect(everything.contains(try address("255.255.255.255")))
            #expect(!everything.contains(try address("2001:db8::1")))
            #expect(try block("::/0").contains(try address("2001:db8::1")))
            #expect(try block("::1").contains(try address("::1")))
            #expect(!(try block("::1").contains(try address("::2"))))
        }
    }
}

// MARK: - Header limits

extension EdgePoliciesTests {
    @Suite struct Limits {
        @Test func defaultsAndBoundaries() throws {
            let limits = try HeaderLimits(ConfigReader(values: [:]))
            #expect(limits == HeaderLimits(maxBytes: 16_384, maxCount: 100))
            #expect(limits.check(count: 100, bytes: 16_384))
            #expect(!limits.check(count: 101, bytes: 100))
            #expect(!limits.check(count: 1, bytes: 16_385))
            #expect(limits.check(count: 0, bytes: 0))
            let configured = try HeaderLimits(ConfigReader(values: ["HTTP_MAX_HEADER_BYTES": "1024", "HTTP_MAX_HEADER_COUNT": "10"]))
            #expect(configured == HeaderLimits(maxBytes: 1024, maxCount: 10))
            #expect(try HeaderLimits(ConfigReader(values: ["HTTP_MAX_HEADER_BYTES": "65536"])).maxBytes == 65_536)
        }

        @Test func aParsedHeadIsMeasuredAsOnTheWire() {
            let limits = HeaderLimits(maxBytes: 1024, maxCount: 3)
            // "X: <value>\r\n" is 1 + value + 4 bytes.
            #expect(limits.check(HTTPHeaders([("X", String(repeating: "v", count: 1019))])))
            #expect(!limits.check(HTTPHeaders([("X", String(repeating: "v", count: 1020))])))
            #expect(!limits.check(HTTPHeaders([("X", String(repeating: "é", count: 510))])))  // bytes, not characters
            #expect(limits.check(HTTPHeaders([("A", "1"), ("B", "2"), ("C", "3")])))
            #expect(!limits.check(HTTPHeaders([("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")])))
            #expect(limits.check(HTTPHeaders()))
        }

        @Test(arguments: [
            ("HTTP_MAX_HEADER_BYTES", "1023"), ("HTTP_MAX_HEADER_BYTES", "65537"), ("HTTP_MAX_HEADER_BYTES", "16k"),
            ("HTTP_MAX_HEADER_COUNT", "0"), ("HTTP_MAX_HEADER_COUNT", "1001"), ("HTTP_MAX_HEADER_COUNT", "many"),
        ])
        func outOfRangeLimitsStopTheGateway(key: String, value: String) {
            #expect(failingKey { _ = try HeaderLimits(ConfigReader(values: [key: value])) } == key)
        }
    }
}

