import Foundation
import Platform

/// One entry of the gateway's route table: requests whose path starts with `prefix`
/// (on a segment boundary) go to `upstream`.
public struct Route: Sendable, Equatable, Decodable {
    public enum Access: String, Sendable, Decodable {
        case `public`
        case authenticated
        /// Public reads with signed-in writes on one prefix: a token, when sent, is verified (a bad
        /// one is a 401 here) and its subject rate-limited; without one the request goes on
        /// anonymously and the service decides.
        case optional
    }

    public var prefix: String
    public var upstream: String
    public var access: Access
    /// `auth` routes (login, register, refresh) get the stricter per-address limit.
    public var rateLimitClass: String?
    public var timeoutMilliseconds: Int?
    public var maxBodyBytes: Int?

    public init(prefix: String, upstream: String, access: Access, rateLimitClass: String? = nil, timeoutMilliseconds: Int? = nil, maxBodyBytes: Int? = nil) {
        self.prefix = prefix
        self.upstream = upstream
        self.access = access
        self.rateLimitClass = rateLimitClass
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxBodyBytes = maxBodyBytes
    }

    func matches(_ path: String) -> Bool {
        if prefix.hasSuffix("/") { return path.hasPrefix(prefix) }
        return path == prefix || path.hasPrefix(prefix + "/")
    }
}

public enum RouteTableError: Error, CustomStringConvertible, Equatable {
    case unreadable(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .unreadable(let path): "route table \(path) cannot be read or is not valid JSON"
        case .invalid(let reason): "route table is invalid: \(reason)"
        }
    }
}

/// The route table: longest prefix wins. Upstreams are named (`identity`, `listings`, ...) and
/// resolved to base URLs from `UPSTREAM_<NAME>`.
public struct RouteTable: Sendable {
    public let routes: [Route]
    /// Each upstream's first address (the others are in `endpoints`).
    public let upstreams: [String: URL]
    /// Every address of each upstream, in configuration order (round-robin over the healthy ones).
    public let endpoints: [String: [URL]]

    public init(routes: [Route], upstreams: [String: URL]) throws {
        try self.init(routes: routes, endpoints: upstreams.mapValues { [$0] })
    }

    public init(routes: [Route], endpoints: [String: [URL]]) throws {
        let upstreams = endpoints.compactMapValues(\.first)
        for route in routes {
            guard route.prefix.hasPrefix("/") else { throw RouteTableError.invalid("prefix \(route.prefix) must start with /") }
            guard upstreams[route.upstream] != nil else { throw RouteTableError.invalid("route \(route.prefix) names unknown upstream \(route.upstream)") }
            if let timeout = route.timeoutMilliseconds, !(1...300_000).contains(timeout) {
                throw RouteTableError.invalid("route \(route.prefix) timeout must be 1...300000 ms")
            }
        }
        let prefixes = routes.map(\.prefix)
        if let duplicate = prefixes.first(where: { prefix in prefixes.filter { $0 == prefix }.count > 1 }) {
            throw RouteTableError.invalid("prefix \(duplicate) appears twice")
        }
        // Longest first, so the first match is the most specific.
        self.routes = routes.sorted { $0.prefix.count > $1.prefix.count }
        self.upstreams = upstreams
        self.endpoints = endpoints
    }

    public func route(for path: String) -> Route? {
        routes.first { $0.matches(path) }
    }

    /// The suite's routes, used unless `ROUTES_FILE` names a JSON array of routes.
    public static let defaultRoutes: [Route] = [
        Route(prefix: "/v1/auth/", upstream: "identity", access: .public, rateLimitClass: "auth"),
        // Signed-in account operations under /v1/auth/ need a token at the edge too.
        Route(prefix: "/v1/auth/password-change", upstream: "identity", access: .authenticated, rateLimitClass: "auth"),
        Route(prefix: "/v1/auth/mfa/totp", upstream: "identity", access: .authenticated, rateLimitClass: "auth"),
        Route(prefix: "/v1/auth/verify-email/resend", upstream: "identity", access: .authenticated, rateLimitClass: "auth"),
        Route(prefix: "/.well-known/", upstream: "identity", access: .public),
        Route(prefix: "/v1/admin/users", upstream: "identity", access: .authenticated),
        Route(prefix: "/v1/admin/audit-log", upstream: "identity", access: .authenticated),
        Route(prefix: "/v1/users", upstream: "identity", access: .authenticated),
        Route(prefix: "/v1/sessions", upstream: "identity", access: .authenticated),
        Route(prefix: "/v1/categories", upstream: "listings", access: .public),
        Route(prefix: "/v1/listings", upstream: "listings", access: .optional),
        Route(prefix: "/v1/vendor/listings", upstream: "listings", access: .authenticated),
        Route(prefix: "/v1/moderation/listings", upstream: "listings", access: .authenticated),
        Route(prefix: "/v1/plans", upstream: "billing", access: .public),
        Route(prefix: "/v1/subscriptions", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/vendor/subscription", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/invoices", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/vendor/balance", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/vendor/payouts", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/vendor/payout-account", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/payments/", upstream: "billing", access: .authenticated),
        // Providers sign their webhooks; billing checks the signature, so no token here.
        Route(prefix: "/v1/webhooks/", upstream: "billing", access: .public),
        Route(prefix: "/v1/admin/subscriptions", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/admin/ledger", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/admin/refunds", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/orders", upstream: "orders", access: .authenticated),
        Route(prefix: "/v1/conversations", upstream: "messaging", access: .authenticated),
        Route(prefix: "/v1/blocks", upstream: "messaging", access: .authenticated),
        Route(prefix: "/v1/disputes", upstream: "orders", access: .authenticated),
        Route(prefix: "/v1/moderation/disputes", upstream: "orders", access: .authenticated),
        Route(prefix: "/v1/reviews", upstream: "orders", access: .authenticated),
        Route(prefix: "/v1/moderation/reviews", upstream: "orders", access: .authenticated),
        // A vendor's published reviews are public.
        Route(prefix: "/v1/vendors/", upstream: "orders", access: .public),
        Route(prefix: "/v1/moderation/reports", upstream: "messaging", access: .authenticated),
        Route(prefix: "/v1/moderation/conversations", upstream: "messaging", access: .authenticated),
        Route(prefix: "/v1/moderation/audit-log", upstream: "messaging", access: .authenticated),
        Route(prefix: "/v1/notifications", upstream: "messaging", access: .authenticated),
        // Unsubscribe links in mails carry a signed token instead of a bearer token.
        Route(prefix: "/v1/notifications/unsubscribe", upstream: "messaging", access: .public),
        // Server-Sent Events: the answer streams through as it comes (no upstream timeout once it starts).
        Route(prefix: "/v1/events/stream", upstream: "messaging", access: .authenticated),
    ]

    public static let upstreamNames = ["identity", "listings", "billing", "orders", "messaging"]
    static let defaultPorts = ["identity": 8081, "listings": 8082, "billing": 8083, "orders": 8084, "messaging": 8085]

    /// Reads `UPSTREAM_<NAME>` and the optional `ROUTES_FILE`; any problem stops the gateway at start.
    public static func load(_ config: ConfigReader) throws -> RouteTable {
        var endpoints: [String: [URL]] = [:]
        for name in upstreamNames {
            // One address or several, comma-separated: `http://10.0.0.5:8082,http://10.0.0.6:8082`.
            let key = "UPSTREAM_\(name.uppercased())"
            let value = config.string(key, default: "http://127.0.0.1:\(defaultPorts[name]!)")
            var urls: [URL] = []
            for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                let text = item.trimmingCharacters(in: .whitespaces)
                guard let url = URL(string: text), url.scheme == "http", url.host != nil, url.path.isEmpty || url.path == "/",
                      !urls.contains(url) else {
                    throw ConfigError.invalidValue(key: key, expected: "distinct http://host:port addresses, comma-separated")
                }
                urls.append(url)
            }
            guard !urls.isEmpty else { throw ConfigError.invalidValue(key: key, expected: "at least one http://host:port address") }
            endpoints[name] = urls
        }
        var routes = defaultRoutes
        if let path = config.string("ROUTES_FILE") {
            guard let data = FileManager.default.contents(atPath: path),
                  let decoded = try? JSONDecoder().decode([Route].self, from: data)
            else { throw RouteTableError.unreadable(path) }
            routes = decoded
        }
        return try RouteTable(routes: routes, endpoints: endpoints)
    }
}
