import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Optimistic concurrency and conditional requests (API.md "Conventions"): a mutable resource's
/// `version` is its `ETag` (`"3"`); `PATCH` must send `If-Match` (missing: 428
/// `precondition-required`, stale: 412 `version-mismatch`); action endpoints honour it when sent.
/// Public reads answer `If-None-Match` with 304.
///
/// The write itself stays in SQL: `UPDATE … SET version = version + 1 WHERE id = $1 AND version = $2`,
/// and zero rows updated means someone else got there first (412 as well).
public enum Versioning {
    public static func etag(_ version: Int) -> String { "\"\(version)\"" }

    /// What `If-Match` asks for.
    public enum Precondition: Sendable, Equatable {
        /// `*`: any current version.
        case any
        /// One of these versions.
        case versions([Int])

        public func admits(_ version: Int) -> Bool {
            switch self {
            case .any: true
            case .versions(let versions): versions.contains(version)
            }
        }
    }

    /// The `If-Match` of a request, or nil when absent. An unreadable one can never match: a 412.
    public static func precondition(_ request: Request) -> Precondition? {
        let values = request.headers[values: .ifMatch]
        guard !values.isEmpty else { return nil }
        var versions: [Int] = []
        for value in values {
            for raw in value.split(separator: ",") {
                var tag = raw.trimmingCharacters(in: .whitespaces)
                if tag == "*" { return .any }
                if tag.hasPrefix("W/") { tag.removeFirst(2) }
                guard tag.count >= 3, tag.first == "\"", tag.last == "\"", let version = Int(tag.dropFirst().dropLast()) else { continue }
                versions.append(version)
            }
        }
        return .versions(versions)
    }

    /// `If-Match` for an update that requires it: 428 when absent.
    public static func required(_ request: Request) throws -> Precondition {
        guard let precondition = precondition(request) else {
            throw Problem(.preconditionRequired, "Send If-Match with the ETag of the version you edited.")
        }
        return precondition
    }

    /// 412 `version-mismatch` unless `precondition` (if any) admits `current`.
    public static func check(_ precondition: Precondition?, current: Int) throws {
        guard let precondition, !precondition.admits(current) else { return }
        throw mismatch(current: current)
    }

    public static func mismatch(current: Int) -> Problem {
        Problem(.preconditionFailed, "The resource has changed; it is now at version \(current). Read it again and retry.",
                typeSlug: "version-mismatch", headers: [.eTag: etag(current)])
    }

    /// A weak ETag for a representation that has no version (a search page): a hash of its bytes.
    public static func etag(of body: [UInt8]) -> String {
        let digest = SHA256.hash(data: body)
        return "W/\"" + digest.prefix(12).map { String(format: "%02x", $0) }.joined() + "\""
    }

    /// True when `If-None-Match` names `etag` (weak comparison, as RFC 9110 says for GET).
    public static func notModified(_ request: Request, etag: String) -> Bool {
        let values = request.headers[values: .ifNoneMatch]
        guard !values.isEmpty else { return false }
        let strip = { (tag: Substring) -> Substring in tag.hasPrefix("W/") ? tag.dropFirst(2) : tag }
        let wanted = strip(Substring(etag))
        for value in values {
            for raw in value.split(separator: ",") {
                let tag = Substring(raw.trimmingCharacters(in: .whitespaces))
                if tag == "*" || strip(tag) == wanted { return true }
            }
        }
        return false
    }
}

extension JSONResponse {
    /// A versioned resource: the body plus `ETag: "<version>"`.
    public static func versioned<Value: Encodable>(_ value: Value, version: Int, status: HTTPResponse.Status = .ok,
                                                   cacheControl: String? = "private, no-cache", headers: HTTPFields = [:]) throws -> Response {
        var fields = headers
        fields[.eTag] = Versioning.etag(version)
        return try make(value, status: status, cacheControl: cacheControl, headers: fields)
    }

    /// A public, cacheable read: `ETag` (the version's, or a hash of the body) and `Cache-Control`,
    /// and 304 without a body when the client's `If-None-Match` still matches.
    public static func cacheable<Value: Encodable>(_ value: Value, request: Request, version: Int? = nil,
                                                   cacheControl: String = "public, max-age=60") throws -> Response {
        let body = try JSONWriter.encode(value)
        return cacheable(encoded: body, etag: version.map(Versioning.etag) ?? Versioning.etag(of: body), request: request,
                         cacheControl: cacheControl)
    }

    /// `cacheable` for a body already written (an answer kept in a cache with its ETag).
    public static func cacheable(encoded body: [UInt8], etag: String, request: Request, cacheControl: String) -> Response {
        var fields: HTTPFields = [.eTag: etag, .cacheControl: cacheControl]
        if Versioning.notModified(request, etag: etag) {
            return Response(status: .notModified, headers: fields)
        }
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: .ok, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
