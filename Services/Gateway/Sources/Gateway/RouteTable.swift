import Foundation
import Platform

/// One entry of the gateway's route table: requests whose path starts with `prefix`
/// (on a segment boundary) go to `upstream`.
public struct Route: Sendable, Equatable, Decodable {
    public enum Access: String, Sendable, Decodable {
        case `public`
        case authenticated
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
    public let upstreams: [String: URL]

    public init(routes: [Route], upstreams: [String: URL]) throws {
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
        Route(prefix: "/v1/listings", upstream: "listings", access: .authenticated),
        Route(prefix: "/v1/plans", upstream: "billing", access: .public),
        Route(prefix: "/v1/subscriptions", upstream: "billing", access: .authenticated),
        Route(prefix: "/v1/orders", upstream: "orders", access: .authenticated),
        Route(prefix: "/v1/conversations", upstream: "messaging", access: .authenticated),
    ]

    public static let upstreamNames = ["identity", "listings", "billing", "orders", "messaging"]
    static let defaultPorts = ["identity": 8081, "listings": 8082, "billing": 8083, "orders": 8084, "messaging": 8085]

    /// Reads `UPSTREAM_<NAME>` and the optional `ROUTES_FILE`; any problem stops the gateway at start.
    public static func load(_ config: ConfigReader) throws -> RouteTable {
        var upstreams: [String: URL] = [:]
        for name in upstreamNames {
            let key = "UPSTREAM_\(name.uppercased())"
            let value = config.string(key, default: "http://127.0.0.1:\(defaultPorts[name]!)")
            guard let url = URL(string: value), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw ConfigError.invalidValue(key: key, expected: "an http(s) URL")
            }
            upstreams[name] = url
        }
        var routes = defaultRoutes
        if let path = config.string("ROUTES_FILE") {
            guard let data = FileManager.default.contents(atPath: path),
                  let decoded = try? JSONDecoder().decode([Route].self, from: data)
            else { throw RouteTableError.unreadable(path) }
            routes = decoded
        }
        return try RouteTable(routes: routes, upstreams: upstreams)
    }
}
