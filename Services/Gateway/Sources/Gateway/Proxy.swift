import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Platform

/// Header rules at the edge: hop-by-hop headers never cross (RFC 9110 §7.6.1), and headers that
/// only the gateway may set are removed from what clients send.
public enum HeaderPolicy {
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization", "host", "content-length",
    ]
    /// Internal headers: set by the gateway or meaningful inside the cluster only.
    static let internalExact: Set<String> = [
        "x-request-id", "x-user-id", "x-user-roles", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
        "forwarded", "x-real-ip", "x-client-request-id",
    ]

    public static func isInternal(_ name: String) -> Bool {
        let lower = name.lowercased()
        return internalExact.contains(lower) || lower.hasPrefix("x-internal-")
    }

    /// The headers to send upstream, from what the client sent.
    public static func upstreamHeaders(from fields: HTTPFields) -> [(String, String)] {
        var connectionListed: Set<String> = []
        for value in fields[values: .connection] {
            for token in value.split(separator: ",") { connectionListed.insert(token.trimmingCharacters(in: .whitespaces).lowercased()) }
        }
        var result: [(String, String)] = []
        for field in fields {
            let name = field.name.canonicalName
            if hopByHop.contains(name) || connectionListed.contains(name) || isInternal(name) { continue }
            result.append((field.name.rawName, field.value))
        }
        return result
    }

    /// The response headers to pass back to the client.
    static func downstreamHeaders(from headers: HTTPHeaders) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in headers {
            let lower = name.lowercased()
            if hopByHop.contains(lower) && lower != "content-length" { continue }
            if lower == "x-request-id" { continue }
            if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
        }
        return fields
    }

    /// Refuses dot segments and encoded slashes so a public prefix cannot reach a protected path.
    public static func isSafePath(_ path: String) -> Bool {
        // One pass over the bytes: this runs on every request.
        let bytes = Array(path.utf8)
        var segmentStart = 0
        for (index, byte) in bytes.enumerated() {
            if byte == 0x5C { return false }  // backslash
            if byte == 0x25, index + 2 < bytes.count {  // %2e, %2f, %5c in either case
                let high = bytes[index + 1], low = bytes[index + 2] | 0x20
                if (high == 0x32 && (low == 0x65 || low == 0x66)) || (high == 0x35 && low == 0x63) { return false }
            }
            if byte == 0x2F {
                if isDotSegment(bytes[segmentStart..<index]) { return false }
                segmentStart = index + 1
            }
        }
        return !isDotSegment(bytes[segmentStart...])
    }

    private static func isDotSegment(_ segment: ArraySlice<UInt8>) -> Bool {
        segment.count == 1 && segment.first == 0x2E || segment.count == 2 && segment.allSatisfy { $0 == 0x2E }
    }
}

/// Forwards a request to its upstream and streams the answer back. Upstream failures become
/// problem+json: 502 when the upstream cannot be reached, 504 when it does not answer in time.
struct Proxy: Sendable {
    let httpClient: HTTPClient
    let defaultTimeout: Duration
    let defaultMaxBodyBytes: Int
    let logger: Logger

    func forward(_ request: Request, route: Route, upstream: URL, context: AppRequestContext, requestId: String, traceparent: TraceParent, clientAddress: String?) async throws -> Response {
        let limit = route.maxBodyBytes ?? defaultMaxBodyBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
        }
        var body: ByteBuffer?
        if request.method != .get && request.method != .head {
            var mutable = request
            do {
                body = try await mutable.collectBody(upTo: limit)
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
            } catch is NIOTooManyBytesError {
                throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
            }
        }
        var target = upstream.absoluteString
        if target.hasSuffix("/") { target.removeLast() }
        target += request.uri.path
        if let query = request.uri.query, !query.isEmpty { target += "?" + query }

        var outgoing = HTTPClientRequest(url: target)
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)
        for (name, value) in HeaderPolicy.upstreamHeaders(from: request.headers) { outgoing.headers.add(name: name, value: value) }
        outgoing.headers.replaceOrAdd(name: "X-Request-Id", value: requestId)
        outgoing.headers.replaceOrAdd(name: "traceparent", value: traceparent.child().description)
        if let client = request.headers[.requestId] { outgoing.headers.replaceOrAdd(name: "X-Client-Request-Id", value: String(client.prefix(128))) }
        if let clientAddress { outgoing.headers.replaceOrAdd(name: "X-Forwarded-For", value: clientAddress) }
        if let host = request.head.authority { outgoing.headers.replaceOrAdd(name: "X-Forwarded-Host", value: host) }
        outgoing.headers.replaceOrAdd(name: "X-Forwarded-Proto", value: "http")
        if let body { outgoing.body = .bytes(body) }

        let timeout = route.timeoutMilliseconds.map { Duration.milliseconds($0) } ?? defaultTimeout
        let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        let idempotent = [.get, .head, .options, .put, .delete].contains(request.method)
        var attempt = 0
        while true {
            attempt += 1
            do {
                let response = try await httpClient.execute(outgoing, deadline: deadline, logger: logger)
                var headers = HeaderPolicy.downstreamHeaders(from: response.headers)
                headers[.requestId] = requestId
                return Response(status: .init(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase),
                                headers: headers, body: ResponseBody(asyncSequence: response.body))
            } catch {
                let failure = Self.classify(error)
                // Only a connection that never carried the request may be retried, and only for idempotent methods.
                if failure == .unreachable, idempotent, attempt < 2, NIODeadline.now() < deadline {
                    continue
                }
                Counter(label: "gateway_upstream_errors_total", dimensions: [("upstream", route.upstream), ("kind", "\(failure)")]).increment()
                context.logger.warning("upstream request failed", metadata: ["upstream": "\(route.upstream)", "error": "\(error)"])
                switch failure {
                case .timeout:
                    throw Problem(.gatewayTimeout, "The \(route.upstream) service did not answer within \(timeout).")
                case .unreachable:
                    throw Problem(.badGateway, "The \(route.upstream) service cannot be reached.", headers: [.retryAfter: "1"])
                case .other:
                    throw Problem(.badGateway, "The \(route.upstream) service failed to answer.")
                }
            }
        }
    }

    enum Failure: Equatable { case timeout, unreachable, other }

    static func classify(_ error: any Error) -> Failure {
        if let client = error as? HTTPClientError {
            if client == .deadlineExceeded || client == .readTimeout { return .timeout }
            if client == .connectTimeout || client == .remoteConnectionClosed { return .unreachable }
            return .other
        }
        if error is NIOConnectionError || error is ChannelError { return .unreachable }
        if let io = error as? IOError, [ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH].contains(io.errnoCode) { return .unreachable }
        let text = String(describing: error).lowercased()
        if text.contains("connection refused") || text.contains("connectfailed") { return .unreachable }
        return .other
    }
}
