import HTTPTypes
import NIOHTTP1
import Platform

// The policies the gateway applies at the edge of every request: CORS, security headers,
// X-Forwarded-* and header size limits. Pure functions over config read once at start; they run
// on the event loop for every request, so they work on UTF-8 bytes (no Foundation, no regex) and
// allocate only the strings they return.

// MARK: - Header fields

/// A set of header fields the edge policies can write into: NIOHTTP1's `HTTPHeaders`,
/// HTTPTypes' `HTTPFields`, or a plain `[(String, String)]`. Names compare case-insensitively.
public protocol EdgeHeaderFields {
    func containsField(named name: String) -> Bool
    mutating func addField(name: String, value: String)
    mutating func removeFields(named name: String)
    /// Replaces every field named `name` with one field of `value`.
    mutating func setField(name: String, value: String)
}

extension EdgeHeaderFields {
    public mutating func setField(name: String, value: String) {
        if containsField(named: name) { removeFields(named: name) }
        addField(name: name, value: value)
    }
}

extension HTTPHeaders: EdgeHeaderFields {
    public func containsField(named name: String) -> Bool { contains(name: name) }
    public mutating func addField(name: String, value: String) { add(name: name, value: value) }
    public mutating func removeFields(named name: String) { remove(name: name) }
    public mutating func setField(name: String, value: String) { replaceOrAdd(name: name, value: value) }
}

extension HTTPFields: EdgeHeaderFields {
    public func containsField(named name: String) -> Bool {
        guard let name = HTTPField.Name(name) else { return false }
        return contains(name)
    }

    public mutating func addField(name: String, value: String) {
        guard let name = HTTPField.Name(name) else { return }
        append(HTTPField(name: name, value: value))
    }

    public mutating func removeFields(named name: String) {
        guard let name = HTTPField.Name(name) else { return }
        self[name] = nil
    }
}

extension Array: EdgeHeaderFields where Element == (String, String) {
    public func containsField(named name: String) -> Bool {
        contains { ASCII.equalsIgnoringCase($0.0.utf8, name.utf8) }
    }

    public mutating func addField(name: String, value: String) { append((name, value)) }

    public mutating func removeFields(named name: String) {
        removeAll { ASCII.equalsIgnoringCase($0.0.utf8, name.utf8) }
    }
}

// MARK: - CORS

/// Cross-origin access for browsers: an allow-list of exact origins from config, preflights
/// answered at the gateway, and never `*` together with credentials.
///
/// With no allow-list (the default) CORS is off: actual requests get no CORS headers, and a
/// browser's preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
/// `.refused`, so the gateway answers it with a 403 problem instead of forwarding it upstream
/// (the browser would refuse the cross-origin request anyway).
public struct CorsPolicy: Sendable {
    /// Which origins may read answers.
    public enum Origins: Sendable, Equatable {
        /// CORS off.
        case off
        /// `*`: any origin, never with credentials.
        case any
        /// Exact, normalised origins (`https://app.example.com`, `http://localhost:5173`).
        case list([String])
    }

    /// What to do with an `OPTIONS` request.
    public enum PreflightDecision: Sendable {
        /// Not a CORS preflight (no `Origin` or no `Access-Control-Request-Method`): an ordinary OPTIONS.
        case notCors
        /// Answer 204 with these headers.
        case allowed([(String, String)])
        /// Answer 403 problem+json.
        case refused(PreflightRefusal)
    }

    /// Why a preflight was refused; for the problem's detail and the log.
    public enum PreflightRefusal: Sendable, Equatable {
        case originNotAllowed
        case methodNotAllowed
        case headersNotAllowed
    }

    public static let allowedMethods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    public static let allowedRequestHeaders = [
        "Authorization", "Content-Type", "Idempotency-Key", "If-Match", "If-None-Match", "X-Request-Id", "traceparent",
    ]
    public static let exposedHeaders = [
        "X-Request-Id", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "ETag", "Location",
    ]

    public let origins: Origins
    /// `Access-Control-Allow-Credentials: true` is sent (never with `*`).
    public let allowCredentials: Bool
    public let maxAgeSeconds: Int

    private let maxAgeValue: String
    private static let allowMethodsValue = allowedMethods.joined(separator: ", ")
    private static let exposeHeadersValue = exposedHeaders.joined(separator: ", ")
    private static let lowercasedRequestHeaders = allowedRequestHeaders.map { Array($0.lowercased().utf8) }

    /// Reads `CORS_ALLOWED_ORIGINS` (comma-separated; empty = CORS off), `CORS_ALLOW_CREDENTIALS`
    /// (default true) and `CORS_MAX_AGE_SECONDS` (default 600, at most a day).
    public init(_ config: ConfigReader) throws {
        let origins = config.string("CORS_ALLOWED_ORIGINS").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? []
        try self.init(
            allowedOrigins: origins,
            allowCredentials: try EdgeConfig.bool(config, "CORS_ALLOW_CREDENTIALS", default: true),
            maxAgeSeconds: try config.int("CORS_MAX_AGE_SECONDS", default: 600, range: 0...86_400))
    }

    /// The same validation as the config reader: each origin `http(s)://host[:port]` with no path
    /// (default ports dropped, lowercased, as browsers send them), or `*` alone without credentials.
    public init(allowedOrigins: [String], allowCredentials: Bool = true, maxAgeSeconds: Int = 600) throws {
        guard (0...86_400).contains(maxAgeSeconds) else {
            throw ConfigError.invalidValue(key: "CORS_MAX_AGE_SECONDS", expected: "an integer in 0...86400")
        }
        let entries = allowedOrigins.map { ASCII.trimmed($0) }
        if entries.isEmpty {
            origins = .off
        } else if entries.contains("*") {
            guard entries.allSatisfy({ $0 == "*" }) else {
                throw ConfigError.invalidValue(key: "CORS_ALLOWED_ORIGINS", expected: "either * alone or a list of exact origins")
            }
            guard !allowCredentials else {
                throw ConfigError.invalidValue(key: "CORS_ALLOWED_ORIGINS", expected: "exact origins while CORS_ALLOW_CREDENTIALS is true (* needs CORS_ALLOW_CREDENTIALS=false)")
            }
            origins = .any
        } else {
            var list: [String] = []
            for entry in entries {
                guard let origin = Self.normalizedOrigin(entry) else {
                    throw ConfigError.invalidValue(key: "CORS_ALLOWED_ORIGINS", expected: "comma-separated origins like https://app.example.com (http or https, host, optional port, no path); '\(entry)' is not one")
                }
                if !list.contains(origin) { list.append(origin) }
            }
            origins = .list(list)
        }
        self.allowCredentials = allowCredentials
        self.maxAgeSeconds = maxAgeSeconds
        self.maxAgeValue = String(maxAgeSeconds)
    }

    public var isEnabled: Bool { origins != .off }

    /// Decides an `OPTIONS` request. `requestMethod` is `Access-Control-Request-Method` (compared
    /// exactly: methods are case-sensitive), `requestHeaders` is `Access-Control-Request-Headers`
    /// (every field value joined by commas; names compared case-insensitively). A preflight that
    /// asks for any method or header outside the lists is refused rather than half-answered, so
    /// the developer sees a 403 instead of an opaque browser failure.
    public func preflight(origin: String?, requestMethod: String?, requestHeaders: String?) -> PreflightDecision {
        guard let origin, let requestMethod else { return .notCors }
        let allowOrigin: String
        switch origins {
        case .off:
            return .refused(.originNotAllowed)
        case .any:
            allowOrigin = "*"
        case .list(let list):
            guard Self.isListed(origin, in: list) else { return .refused(.originNotAllowed) }
            allowOrigin = origin
        }
        guard Self.allowedMethods.contains(requestMethod) else { return .refused(.methodNotAllowed) }
        var allowHeaders = ""
        if let requestHeaders {
            guard let names = Self.allowedHeaderList(requestHeaders) else { return .refused(.headersNotAllowed) }
            allowHeaders = names
        }
        var headers: [(String, String)] = []
        headers.reserveCapacity(6)
        headers.append(("Access-Control-Allow-Origin", allowOrigin))
        if origins != .any {
            headers.append(("Vary", "Origin"))
            if allowCredentials { headers.append(("Access-Control-Allow-Credentials", "true")) }
        }
        headers.append(("Access-Control-Allow-Methods", Self.allowMethodsValue))
        if !allowHeaders.isEmpty { headers.append(("Access-Control-Allow-Headers", allowHeaders)) }
        headers.append(("Access-Control-Max-Age", maxAgeValue))
        return .allowed(headers)
    }

    /// Headers for an actual (non-preflight) response to a request with this `Origin`. An allowed
    /// origin gets itself back with the exposed headers (and credentials when enabled); any other
    /// request, with or without `Origin`, gets only `Vary: Origin` when the list is exact, so a
    /// cache never serves one origin's answer to another. CORS off: nothing.
    public func responseHeaders(origin: String?) -> [(String, String)] {
        var headers: [(String, String)] = []
        addResponseHeaders(origin: origin, to: &headers)
        return headers
    }

    /// ``responseHeaders(origin:)`` written straight into a response's fields.
    public func addResponseHeaders<Fields: EdgeHeaderFields>(origin: String?, to fields: inout Fields) {
        switch origins {
        case .off:
            return
        case .any:
            guard origin != nil else { return }
            fields.addField(name: "Access-Control-Allow-Origin", value: "*")
            fields.addField(name: "Access-Control-Expose-Headers", value: Self.exposeHeadersValue)
        case .list(let list):
            if let origin, Self.isListed(origin, in: list) {
                fields.addField(name: "Access-Control-Allow-Origin", value: origin)
                if allowCredentials { fields.addField(name: "Access-Control-Allow-Credentials", value: "true") }
                fields.addField(name: "Access-Control-Expose-Headers", value: Self.exposeHeadersValue)
            }
            fields.addField(name: "Vary", value: "Origin")
        }
    }

    /// Byte-exact: browsers send the origin serialised (lowercase, no default port), and the
    /// value is echoed back, so it must be exactly a listed one.
    private static func isListed(_ origin: String, in list: [String]) -> Bool {
        list.contains { $0.utf8.elementsEqual(origin.utf8) }
    }

    /// The requested header names, spelled as in ``allowedRequestHeaders``, deduplicated, in the
    /// order asked; "" when none were named; nil when one is not allowed.
    static func allowedHeaderList(_ requested: String) -> String? {
        var result = ""
        var seen: UInt32 = 0
        var refused = false
        ASCII.forEachListElement(requested) { element in
            guard let index = lowercasedRequestHeaders.firstIndex(where: { ASCII.equalsIgnoringCase(element, $0) }) else {
                refused = true
                return false
            }
            if seen & (1 << index) == 0 {
                seen |= 1 << index
                if !result.isEmpty { result += ", " }
                result += allowedRequestHeaders[index]
            }
            return true
        }
        return refused ? nil : result
    }

    /// `scheme://host[:port]` lowercased with the scheme's default port removed, or nil.
    static func normalizedOrigin(_ text: String) -> String? {
        let lowered = text.lowercased()
        let bytes = Array(lowered.utf8)
        let scheme: String
        var index: Int
        if bytes.starts(with: "https://".utf8) {
            scheme = "https"
            index = 8
        } else if bytes.starts(with: "http://".utf8) {
            scheme = "http"
            index = 7
        } else {
            return nil
        }
        let hostStart = index
        var host: String?
        if index < bytes.count, bytes[index] == UInt8(ascii: "[") {
            guard let close = bytes[index...].firstIndex(of: UInt8(ascii: "]")),
                  let address = IPAddress.parse(bytes[(index + 1)..<close], allowZone: false), !address.isV4
            else { return nil }
            host = "[\(address)]"  // as browsers serialise it
            index = close + 1
        } else {
            var labelLength = 0
            var hostLength = 0
            while index < bytes.count, bytes[index] != UInt8(ascii: ":") {
                let byte = bytes[index]
                if byte == UInt8(ascii: ".") {
                    guard labelLength > 0 else { return nil }
                    labelLength = 0
                } else if ASCII.isAlphanumeric(byte) || byte == UInt8(ascii: "-") {
                    labelLength += 1
                    guard labelLength <= 63 else { return nil }
                } else {
                    return nil  // a path, query, fragment, userinfo, wildcard or anything else
                }
                hostLength += 1
                index += 1
            }
            guard labelLength > 0, hostLength <= 253 else { return nil }
        }
        let hostText = host ?? String(decoding: bytes[hostStart..<index], as: UTF8.self)
        guard index < bytes.count else { return "\(scheme)://\(hostText)" }
        guard bytes[index] == UInt8(ascii: ":") else { return nil }
        let digits = bytes[(index + 1)...]
        guard (1...5).contains(digits.count), digits.first != UInt8(ascii: "0"), digits.allSatisfy(ASCII.isDigit),
              let port = Int(String(decoding: digits, as: UTF8.self)), port <= 65535
        else { return nil }
        if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) { return "\(scheme)://\(hostText)" }
        return "\(scheme)://\(hostText):\(port)"
    }
}

// MARK: - Security headers

/// The headers every response leaves the gateway with.
public enum SecurityHeaders {
    /// Sets `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`
    /// (replacing any an upstream sent: the edge owns them), `Strict-Transport-Security` when the
    /// client reached the suite over TLS (over plain HTTP browsers ignore it), and
    /// `Cache-Control: no-store` on answers to requests that carried credentials unless the
    /// upstream chose a Cache-Control (`upstreamCacheControl`, or one already in `headers`).
    public static func apply<Fields: EdgeHeaderFields>(to headers: inout Fields, authenticated: Bool, behindTLS: Bool, upstreamCacheControl: Bool) {
        headers.setField(name: "X-Content-Type-Options", value: "nosniff")
        headers.setField(name: "Referrer-Policy", value: "no-referrer")
        headers.setField(name: "X-Frame-Options", value: "DENY")
        if behindTLS {
            headers.setField(name: "Strict-Transport-Security", value: "max-age=31536000; includeSubDomains")
        }
        if authenticated, !upstreamCacheControl, !headers.containsField(named: "Cache-Control") {
            headers.addField(name: "Cache-Control", value: "no-store")
        }
    }

    /// `GATEWAY_BEHIND_TLS` (default false): TLS is terminated in front of the gateway for every request.
    public static func configuredBehindTLS(_ config: ConfigReader) throws -> Bool {
        try EdgeConfig.bool(config, "GATEWAY_BEHIND_TLS", default: false)
    }

    /// Whether this request reached the suite over TLS: configured so, or the scheme
    /// ``ForwardedHeaders/compute(peer:clientForwardedFor:clientForwardedProto:clientForwardedHost:host:tls:)``
    /// settled on is https (the gateway's own TLS, or a trusted proxy's `X-Forwarded-Proto`).
    public static func isBehindTLS(configured: Bool, forwardedProto: String) -> Bool {
        configured || forwardedProto == "https"
    }
}

// MARK: - X-Forwarded-*

/// `X-Forwarded-For`, `-Proto` and `-Host` for the upstream request, and the client address the
/// gateway rate-limits and logs by. Client-sent values are believed only from a peer in
/// `TRUSTED_PROXIES`; from anyone else they are ignored and the connection speaks for itself.
public struct ForwardedHeaders: Sendable {
    /// What to send upstream and whom the request is from.
    public struct Values: Sendable, Equatable {
        /// `X-Forwarded-For` for the upstream: the client first (services read the first entry),
        /// then the trusted proxies it passed, then the peer.
        public var forwardedFor: String
        /// `X-Forwarded-Proto`: `http` or `https`.
        public var proto: String
        /// `X-Forwarded-Host`; nil when no valid host is known (then send none).
        public var host: String?
        /// The client's address, for rate limits and logs.
        public var clientAddress: String

        public init(forwardedFor: String, proto: String, host: String?, clientAddress: String) {
            self.forwardedFor = forwardedFor
            self.proto = proto
            self.host = host
            self.clientAddress = clientAddress
        }
    }

    public let trustedProxies: [AddressBlock]

    /// Reads `TRUSTED_PROXIES`: comma-separated IPv4/IPv6 addresses or CIDR blocks; anything
    /// else stops the gateway at start. Empty (the default): no client-sent value is believed.
    public init(_ config: ConfigReader) throws {
        var blocks: [AddressBlock] = []
        if let value = config.string("TRUSTED_PROXIES") {
            for item in value.split(separator: ",", omittingEmptySubsequences: false) {
                let text = ASCII.trimmed(String(item))
                guard let block = AddressBlock(text) else {
                    throw ConfigError.invalidValue(key: "TRUSTED_PROXIES", expected: "comma-separated IP addresses or CIDR blocks (no host bits set); '\(text)' is not one")
                }
                blocks.append(block)
            }
        }
        self.init(trustedProxies: blocks)
    }

    public init(trustedProxies: [AddressBlock]) {
        self.trustedProxies = trustedProxies
    }

    /// `peer` is the connection's remote IP address as text (no port), nil when unknown.
    /// `clientForwardedFor` is every `X-Forwarded-For` field value joined by commas; `host` is the
    /// request's `Host`; `tls` whether the gateway itself terminated TLS for this connection.
    ///
    /// From an untrusted peer: `X-Forwarded-For` is the peer, the scheme is the connection's, the
    /// host is `Host`. From a trusted peer the chain is walked from the right, skipping trusted
    /// addresses; the first untrusted address is the client (RFC 7239). A token that is not an
    /// address ends the walk: the client is then the last address walked, or the peer. When every
    /// address is trusted the leftmost is the client. What lies left of the client is client-made,
    /// so it is dropped from the chain sent upstream; addresses taken from the chain are written
    /// canonically (RFC 5952, IPv4-mapped as IPv4) so one client is one rate-limit key.
    /// `X-Forwarded-Proto` (`http`/`https` only) and `X-Forwarded-Host` (a plausible host) are then
    /// taken from the trusted proxy, falling back to the connection's.
    public func compute(peer: String?, clientForwardedFor: String?, clientForwardedProto: String?, clientForwardedHost: String?, host: String?, tls: Bool) -> Values {
        let connectionProto = tls ? "https" : "http"
        guard !trustedProxies.isEmpty, let peer, let peerAddress = IPAddress.parse(peer, allowZone: true), isTrusted(peerAddress) else {
            let address = peer ?? "unknown"
            return Values(forwardedFor: address, proto: connectionProto, host: Self.validHost(host), clientAddress: address)
        }
        let proto = Self.validProto(clientForwardedProto) ?? connectionProto
        let forwardedHost = Self.validHost(clientForwardedHost) ?? Self.validHost(host)
        guard var chain = clientForwardedFor else {
            return Values(forwardedFor: peer, proto: proto, host: forwardedHost, clientAddress: peer)
        }
        let (clientAddress, forwardedFor) = chain.withUTF8 { walk($0, peer: peer) }
        return Values(forwardedFor: forwardedFor ?? peer, proto: proto, host: forwardedHost, clientAddress: clientAddress ?? peer)
    }

    /// The client in a trusted proxy's chain and the chain to send upstream; nils when the chain
    /// names no address (then the peer is the client).
    private func walk(_ bytes: UnsafeBufferPointer<UInt8>, peer: String) -> (client: String?, chain: String?) {
        // Right to left; `client` ends as the last address walked.
        var client: (address: IPAddress, end: Int)?
        var end = bytes.count
        while end > 0 {
            let comma = bytes[..<end].lastIndex(of: UInt8(ascii: ",")) ?? -1
            let element = ASCII.trimmed(bytes[(comma + 1)..<end])
            end = comma
            if element.isEmpty { continue }  // empty list elements are allowed and mean nothing
            guard let address = IPAddress.parseForwarded(element) else { break }
            client = (address, element.endIndex)
            if !isTrusted(address) { break }
        }
        guard let client else { return (nil, nil) }
        let clientAddress = client.address.description
        var forwardedFor = clientAddress
        forwardedFor.reserveCapacity(bytes.count - client.end + clientAddress.utf8.count + peer.utf8.count + 2)
        // The trusted hops after the client, as their proxies wrote them (each parsed above).
        var start = client.end
        while start < bytes.count {
            let comma = bytes[start...].firstIndex(of: UInt8(ascii: ",")) ?? bytes.count
            let element = ASCII.trimmed(bytes[start..<comma])
            if !element.isEmpty {
                forwardedFor += ", "
                forwardedFor += String(decoding: element, as: UTF8.self)
            }
            start = comma
            if start < bytes.count { start += 1 }
        }
        forwardedFor += ", "
        forwardedFor += peer
        return (clientAddress, forwardedFor)
    }

    func isTrusted(_ address: IPAddress) -> Bool {
        trustedProxies.contains { $0.contains(address) }
    }

    /// `http` or `https` (any case, one value), or nil.
    static func validProto(_ value: String?) -> String? {
        guard let value else { return nil }
        let token = ASCII.trimmed(value.utf8[...])
        if ASCII.equalsIgnoringCase(token, "https".utf8) { return "https" }
        if ASCII.equalsIgnoringCase(token, "http".utf8) { return "http" }
        return nil
    }

    /// A host as a client may name one: 1...255 bytes of printable ASCII with no space, no list
    /// separator and nothing that would make it a URL (`/ \ ? # @`); nil otherwise.
    static func validHost(_ value: String?) -> String? {
        guard let value else { return nil }
        let bytes = value.utf8
        guard (1...255).contains(bytes.count) else { return nil }
        for byte in bytes {
            switch byte {
            case 0...0x20, 0x7F...0xFF: return nil
            case UInt8(ascii: ","), UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "@"): return nil
            default: continue
            }
        }
        return value
    }
}

/// An IPv4 or IPv6 address, IPv4-mapped IPv6 addresses counting as IPv4.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let isV4: Bool
    /// The address bits; an IPv4 address in the low 32.
    public let bits: UInt128

    init(v4 bits: UInt32) {
        isV4 = true
        self.bits = UInt128(bits)
    }

    init(v6 bits: UInt128) {
        // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket.
        isV4 = bits >> 32 == 0xFFFF
        self.bits = isV4 ? bits & 0xFFFF_FFFF : bits
    }

    /// A plain address (`192.0.2.1`, `2001:db8::1`); with `allowZone`, `fe80::1%eth0` too (zone ignored).
    public static func parse(_ text: String, allowZone: Bool = false) -> IPAddress? {
        var text = text
        return text.withUTF8 { parse($0[...], allowZone: allowZone) }
    }

    static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes, allowZone: Bool) -> IPAddress? where Bytes.Index == Int {
        guard !bytes.isEmpty, bytes.count <= 64 else { return nil }
        if bytes.contains(UInt8(ascii: ":")) {
            var end = bytes.endIndex
            if let percent = bytes.firstIndex(of: UInt8(ascii: "%")) {
                guard allowZone, percent + 1 < bytes.endIndex else { return nil }
                end = percent
            }
            return parseV6(bytes[bytes.startIndex..<end]).map { IPAddress(v6: $0) }
        }
        return parseV4(bytes).map { IPAddress(v4: $0) }
    }

    /// An `X-Forwarded-For` element: an address, `[v6]`, `[v6]:port` or `v4:port` (some proxies add ports).
    static func parseForwarded<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> IPAddress? where Bytes.Index == Int {
        guard let first = bytes.first else { return nil }
        if first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            let rest = bytes[(close + 1)...]
            guard rest.isEmpty || isPort(rest), let bits = parseV6(bytes[(bytes.startIndex + 1)..<close]) else { return nil }
            return IPAddress(v6: bits)
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return parseV4(bytes).map { IPAddress(v4: $0) } }
        if !bytes[(colon + 1)...].contains(UInt8(ascii: ":")) {
            // One colon: an IPv4 address with a port.
            guard isPort(bytes[colon...]), let bits = parseV4(bytes[bytes.startIndex..<colon]) else { return nil }
            return IPAddress(v4: bits)
        }
        return parseV6(bytes).map { IPAddress(v6: $0) }
    }

    /// `:` followed by 1...5 digits.
    private static func isPort<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        bytes.first == UInt8(ascii: ":") && (2...6).contains(bytes.count) && bytes.dropFirst().allSatisfy(ASCII.isDigit)
    }

    /// Dotted decimal, four octets, no leading zeros (`010` is octal to some parsers).
    static func parseV4<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt32? {
        var result: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        var leadingZero = false
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                result = result << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            } else if ASCII.isDigit(byte) {
                if digits == 1, leadingZero { return nil }
                if digits == 0 { leadingZero = byte == UInt8(ascii: "0") }
                digits += 1
                octet = octet * 10 + UInt32(byte - UInt8(ascii: "0"))
                guard digits <= 3, octet <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, dots == 3 else { return nil }
        return result << 8 | octet
    }

    /// RFC 4291 text: up to eight groups of 1...4 hex digits, one `::`, an optional dotted IPv4 tail.
    static func parseV6<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> UInt128? where Bytes.Index == Int {
        var head: UInt128 = 0, headCount = 0
        var tail: UInt128 = 0, tailCount = 0
        var compressed = false
        var index = bytes.startIndex
        let end = bytes.endIndex
        guard index < end else { return nil }
        if bytes[index] == UInt8(ascii: ":") {
            guard index + 1 < end, bytes[index + 1] == UInt8(ascii: ":") else { return nil }
            compressed = true
            index += 2
        }
        while index < end {
            let groupStart = index
            var group: UInt128 = 0
            var digits = 0
            while index < end, let value = ASCII.hexValue(bytes[index]) {
                group = group << 4 | UInt128(value)
                digits += 1
                index += 1
                guard digits <= 4 else { return nil }
            }
            var width = 1
            if index < end, bytes[index] == UInt8(ascii: ".") {
                // An embedded IPv4 address ends the text and fills two groups.
                guard let v4 = parseV4(bytes[groupStart..<end]) else { return nil }
                group = UInt128(v4)
                width = 2
                index = end
            } else if digits == 0 {
                return nil
            }
            if compressed {
                tail = tail << (16 * width) | group
                tailCount += width
            } else {
                head = head << (16 * width) | group
                headCount += width
            }
            guard headCount + tailCount <= 8 else { return nil }
            if index == end { break }
            guard bytes[index] == UInt8(ascii: ":"), width == 1 else { return nil }
            index += 1
            guard index < end else { return nil }  // a trailing single colon
            if bytes[index] == UInt8(ascii: ":") {
                guard !compressed else { return nil }
                compressed = true
                index += 1
            }
        }
        if compressed {
            guard headCount + tailCount <= 7 else { return nil }
        } else {
            guard headCount == 8 else { return nil }
        }
        return head << (16 * (8 - headCount)) | tail
    }

    /// `192.0.2.1`, or RFC 5952 (`2001:db8::1`: lowercase, the longest run of two or more zero groups shortened).
    public var description: String {
        if isV4 {
            let value = UInt32(truncatingIfNeeded: bits)
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        }
        let bits = bits
        func group(_ index: Int) -> UInt16 { UInt16(truncatingIfNeeded: bits >> (112 - 16 * index)) }
        var bestStart = -1, bestLength = 1
        var runStart = 0, runLength = 0
        for index in 0..<8 {
            if group(index) == 0 {
                if runLength == 0 { runStart = index }
                runLength += 1
                if runLength > bestLength {
                    bestStart = runStart
                    bestLength = runLength
                }
            } else {
                runLength = 0
            }
        }
        var text = ""
        text.reserveCapacity(39)
        var index = 0
        while index < 8 {
            if index == bestStart {
                text += "::"
                index += bestLength
                continue
            }
            if !text.isEmpty, !text.hasSuffix(":") { text += ":" }
            text += String(group(index), radix: 16)
            index += 1
        }
        return text
    }
}

/// An address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
public struct AddressBlock: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    /// Parses `address` or `address/prefix`; nil for anything else, including host bits set
    /// beyond the prefix (`10.0.0.1/8` is more likely a typo than a wish).
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress.parse(String(parts[0])) else { return nil }
        let width = address.isV4 ? 32 : 128
        var length = width
        if parts.count == 2 {
            let digits = parts[1].utf8
            guard (1...3).contains(digits.count), digits.allSatisfy(ASCII.isDigit),
                  digits.count == 1 || digits.first != UInt8(ascii: "0"),
                  let parsed = Int(parts[1]), parsed <= width
            else { return nil }
            length = parsed
        }
        guard Self.hostBits(address.bits, prefixLength: length, width: width) == 0 else { return nil }
        self.network = address
        self.prefixLength = length
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.isV4 == network.isV4 else { return false }
        let width = network.isV4 ? 32 : 128
        return (address.bits ^ network.bits) >> (width - prefixLength) == 0
    }

    private static func hostBits(_ bits: UInt128, prefixLength: Int, width: Int) -> UInt128 {
        let hostWidth = width - prefixLength
        return hostWidth == 0 ? 0 : bits & (UInt128.max >> (128 - hostWidth))
    }

    public var description: String { "\(network)/\(prefixLength)" }
}

// MARK: - Header limits

/// How large a request's header block may be; above it the server answers 431.
public struct HeaderLimits: Sendable, Equatable {
    public let maxBytes: Int
    public let maxCount: Int

    /// `HTTP_MAX_HEADER_BYTES` (default 16384, 1024...65536) and `HTTP_MAX_HEADER_COUNT` (default 100, 1...1000).
    public init(_ config: ConfigReader) throws {
        self.init(
            maxBytes: try config.int("HTTP_MAX_HEADER_BYTES", default: 16_384, range: 1_024...65_536),
            maxCount: try config.int("HTTP_MAX_HEADER_COUNT", default: 100, range: 1...1_000))
    }

    public init(maxBytes: Int = 16_384, maxCount: Int = 100) {
        self.maxBytes = maxBytes
        self.maxCount = maxCount
    }

    /// True when a header block of `count` fields and `bytes` bytes is within the limits.
    /// `bytes` counts each field as on the wire: name, value and 4 bytes (`: ` and CRLF).
    public func check(count: Int, bytes: Int) -> Bool {
        count <= maxCount && bytes <= maxBytes
    }

    /// ``check(count:bytes:)`` for a parsed request head.
    public func check(_ headers: HTTPHeaders) -> Bool {
        var count = 0
        var bytes = 0
        for (name, value) in headers {
            count += 1
            bytes += name.utf8.count + value.utf8.count + 4
            if count > maxCount || bytes > maxBytes { return false }
        }
        return true
    }
}

// MARK: - Helpers

enum EdgeConfig {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case); ConfigReader has no boolean getter.
    static func bool(_ config: ConfigReader, _ key: String, default fallback: Bool) throws -> Bool {
        guard let raw = config.string(key) else { return fallback }
        switch ASCII.trimmed(raw).lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ConfigError.invalidValue(key: key, expected: "true or false")
        }
    }
}

/// Byte-level ASCII helpers: HTTP header syntax is ASCII, and these run per request.
enum ASCII {
    static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x41...0x46: byte - 0x41 + 10
        case 0x61...0x66: byte - 0x61 + 10
        default: nil
        }
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte
    }

    static func equalsIgnoringCase<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { lowercased($0) == lowercased($1) }
    }

    static func isWhitespace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    /// Without leading and trailing spaces and tabs (HTTP's OWS).
    static func trimmed<Bytes: BidirectionalCollection<UInt8>>(_ bytes: Bytes) -> Bytes.SubSequence {
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, isWhitespace(bytes[start]) { start = bytes.index(after: start) }
        while end > start, isWhitespace(bytes[bytes.index(before: end)]) { end = bytes.index(before: end) }
        return bytes[start..<end]
    }

    static func trimmed(_ text: String) -> String {
        let bytes = trimmed(text.utf8[...])
        return bytes.count == text.utf8.count ? text : String(Substring(bytes))
    }

    /// Calls `body` with each non-empty, trimmed element of a comma-separated header value until it returns false.
    static func forEachListElement(_ value: String, _ body: (Substring.UTF8View) -> Bool) {
        let utf8 = value.utf8
        var start = utf8.startIndex
        while start < utf8.endIndex {
            let comma = utf8[start...].firstIndex(of: UInt8(ascii: ",")) ?? utf8.endIndex
            let element = trimmed(Substring(utf8[start..<comma]).utf8)
            if !element.isEmpty, !body(element) { return }
            start = comma == utf8.endIndex ? comma : utf8.index(after: comma)
        }
    }
}
