import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Reads JSON request bodies with the limits and error mapping every service shares:
/// over the limit → 413, not JSON → 400, missing or mistyped fields → 422 naming the field.
public enum JSONBody {
    public static func decode<Value: Decodable>(_ type: Value.Type, from request: Request, limit: Int) async throws -> Value {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
        } catch is NIOTooManyBytesError {
            throw Problem(.payloadTooLarge, "The request body exceeds \(limit) bytes.")
        }
        return try decode(type, from: Data(buffer: buffer))
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

    public func queryString(_ name: String) -> String? {
        uri.queryParameters[name[...]].map(String.init)
    }
}

/// A page of a list endpoint: `{ "items": [...], "nextCursor": ... }`.
public struct Page<Item: Encodable & Sendable>: ResponseEncodable, Sendable {
    public var items: [Item]
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }

    enum CodingKeys: String, CodingKey { case items, nextCursor }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(items, forKey: .items)
        try container.encode(nextCursor, forKey: .nextCursor)  // explicit null, not an absent key
    }
}

/// Keyset pagination position: the sort key of the last item returned, opaque to clients.
public struct Cursor: Codable, Sendable, Equatable {
    public var time: Date
    public var id: UUID

    public init(time: Date, id: UUID) {
        self.time = time
        self.id = id
    }

    public func encoded() -> String {
        let micros = Int64((time.timeIntervalSince1970 * 1_000_000).rounded())
        return Base64URL.encode(Data("\(micros):\(id.uuidString.lowercased())".utf8))
    }

    /// Decodes a client-supplied cursor; anything not produced by `encoded()` is a 400.
    public static func decode(_ text: String) throws -> Cursor {
        guard let data = Base64URL.decode(text), let string = String(data: data, encoding: .utf8) else {
            throw Problem(.malformedRequest, "The cursor is not valid.")
        }
        let parts = string.split(separator: ":")
        guard parts.count == 2, let micros = Int64(parts[0]), let id = UUID(uuidString: String(parts[1])) else {
            throw Problem(.malformedRequest, "The cursor is not valid.")
        }
        return Cursor(time: Date(timeIntervalSince1970: Double(micros) / 1_000_000), id: id)
    }
}

public enum Base64URL {
    public static func encode(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func decode(_ text: String) -> Data? {
        guard text.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !base64.contains("=") else { return nil }
        let remainder = base64.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { base64 += String(repeating: "=", count: 4 - remainder) }
        return Data(base64Encoded: base64)
    }
}

extension UUID {
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

/// The `?limit=&cursor=` of a list endpoint: limit 1...100 (default 20), an opaque keyset cursor.
public struct PageRequest: Sendable {
    public static let maximumLimit = 100
    public var limit: Int
    public var after: Cursor?

    public init(_ request: Request, defaultLimit: Int = 20) throws {
        limit = try request.queryInt("limit", default: defaultLimit, range: 1...Self.maximumLimit)
        after = try request.queryString("cursor").map(Cursor.decode)
    }

    public init(limit: Int, after: Cursor? = nil) throws {
        guard (1...Self.maximumLimit).contains(limit) else {
            throw Problem.validation([FieldError("limit", "must be an integer from 1 to \(Self.maximumLimit)")])
        }
        self.limit = limit
        self.after = after
    }

    /// Rows are fetched `limit + 1` at a time; the extra row only says that another page exists.
    public var fetchLimit: Int { limit + 1 }

    /// The page of `rows` (fetched with `fetchLimit`), its next cursor taken from the last item kept.
    public func page<Item>(_ rows: [Item], position: (Item) -> Cursor) -> Page<Item> {
        guard rows.count > limit else { return Page(items: rows, nextCursor: nil) }
        let items = Array(rows.prefix(limit))
        return Page(items: items, nextCursor: items.last.map { position($0).encoded() })
    }
}
