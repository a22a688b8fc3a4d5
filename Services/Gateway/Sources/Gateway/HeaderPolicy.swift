import Foundation
import NIOHTTP1

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

    /// The headers to send upstream, from what the client sent (NIO's representation).
    static func upstreamHeaders(from headers: HTTPHeaders) -> HTTPHeaders {
        var connectionListed: Set<String> = []
        for value in headers[canonicalForm: "connection"] { connectionListed.insert(value.lowercased()) }
        var result = HTTPHeaders()
        result.reserveCapacity(headers.count + 6)
        for (name, value) in headers {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || connectionListed.contains(lower) || isInternal(lower) { continue }
            result.add(name: name, value: value)
        }
        return result
    }

    /// The response headers to pass back to the client (NIO's representation); the framing
    /// (`content-length` or chunked) is the gateway's own.
    static func downstream(from headers: HTTPHeaders) -> HTTPHeaders {
        var result = HTTPHeaders()
        result.reserveCapacity(headers.count + 4)
        for (name, value) in headers {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || lower == "x-request-id" { continue }
            result.add(name: name, value: value)
        }
        return result
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
