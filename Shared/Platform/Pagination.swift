import Foundation
import Hummingbird

/// A page of a list endpoint: `{ "items": [...], "nextCursor": ... }`.
public struct Page<Item: Encodable & Sendable>: ResponseEncodable, Sendable {
    public var items: [Item]
    public var nextCursor: String?

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
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

    /// Decodes a client-supplied cursor; anything not produced by `encoded()` is a 422 naming `cursor`, like a bad `limit`.
    public static func decode(_ text: String) throws -> Cursor {
        let invalid = Problem.validation([FieldError("cursor", "is not a valid cursor")])
        guard let data = Base64URL.decode(text), let string = String(data: data, encoding: .utf8) else { throw invalid }
        let parts = string.split(separator: ":")
        // Years 1...9999 only: PostgresNIO traps binding a Date far outside them (Int64.min µs would crash the process).
        guard parts.count == 2, let micros = Int64(parts[0]), SortKeyValue.microsecondRange.contains(micros),
              let id = UUID(uuidString: String(parts[1])) else { throw invalid }
        // The Date that PostgresNIO binds back to exactly this microsecond (see SortKeyValue.date).
        return Cursor(time: SortKeyValue.date(microseconds: micros), id: id)
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
