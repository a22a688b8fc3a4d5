import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Reads JSON request bodies with the limits and error mapping every service shares:
/// over the limit → 413, not JSON → 400, missing or mistyped fields → 422 naming the field.
public enum JSONBody {
    public static func decode<Value: Decodable>(_ type: Value.Type, from request: Request, limit: Int) async throws -> Value {
        try decode(type, from: try await collect(from: request, limit: limit))
    }

    /// The raw body, at most `limit` bytes (413 beyond).
    public static func collect(from request: Request, limit: Int) async throws -> Data {
        var request = request
        do {
            return Data(buffer: try await request.collectBody(upTo: limit))
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
        } catch is NIOTooManyBytesError {
            throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
        }
    }

    public static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        guard !data.isEmpty else { throw Problem(.malformedRequest, "A JSON body is required.") }
        guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil else {
            throw Problem(.malformedRequest, "The body is not valid JSON.")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(type, from: data)
        } catch let error as DecodingError {
            throw Problem.validation([fieldError(for: error)])
        }
    }

    static func fieldError(for error: DecodingError) -> FieldError {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            let keys = codingPath + (last.map { [$0] } ?? [])
            let name = keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return name.isEmpty ? "body" : name
        }
        switch error {
        case .keyNotFound(let key, let context):
            return FieldError(path(context.codingPath, key), "is required")
        case .typeMismatch(let type, let context):
            return FieldError(path(context.codingPath), "must be \(describe(type))")
        case .valueNotFound(let type, let context):
            return FieldError(path(context.codingPath), "must be \(describe(type)), not null")
        case .dataCorrupted(let context):
            return FieldError(path(context.codingPath), "has an invalid value")
        @unknown default:
            return FieldError("body", "is invalid")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Bool.Type: "a boolean"
        case is Double.Type: "a number"
        default: type is any Collection.Type ? "an array" : "an object"
        }
    }
}

extension Request {
    /// The query parameter parsed as an integer within bounds, or a 422 naming it.
    public func queryInt(_ name: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
        guard let raw = uri.queryParameters[name[...]] else { return fallback }
        guard let value = Int(String(raw)), range.contains(value) else {
            throw Problem.validation([FieldError(name, "must be an integer from \(range.lowerBound) to \(range.upperBound)")])
        }
        return value
    }

    /// The query parameter as text, decoded as HTML forms and every client library encode it:
    /// `+` is a space and `%2B` a plus (`?q=collie+pups`, `?reason=late%20delivery`). Nil when
    /// absent; the first one when repeated.
    public func queryString(_ name: String) -> String? {
        guard let query = uri.query, !query.isEmpty else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard Self.formDecoded(parts[0]) == name else { continue }
            return parts.count > 1 ? Self.formDecoded(parts[1]) ?? String(parts[1]) : ""
        }
        return nil
    }

    static func formDecoded(_ text: Substring) -> String? {
        String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}

extension UUID {
    /// The wire and key form (event payloads, job keys, subjects): lower-case.
    public var lowercased: String { uuidString.lowercased() }

    /// A time-ordered UUID (RFC 9562 version 7): 48-bit Unix milliseconds, then random bits.
    public static func v7(now: Date = Date()) -> UUID {
        var bytes = [UInt8](repeating: 0, count: 16)
        let millis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - index))) }
        var generator = SystemRandomNumberGenerator()
        for index in 6..<16 { bytes[index] = generator.next() }
        bytes[6] = (bytes[6] & 0x0F) | 0x70
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }
}

