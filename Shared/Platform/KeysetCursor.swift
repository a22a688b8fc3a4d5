import Foundation
import PostgresNIO
import Hummingbird

/// One sort key value of a row, as a keyset cursor carries it and a query binds it.
///
/// Values compare as the cursor encodes them: times to the microsecond (Postgres's precision),
/// doubles by bit pattern. Keys must be non-null: sort on `coalesce(expression, fallback)`.
public enum SortKeyValue: Codable, Sendable, Hashable {
    case int(Int64)
    case double(Double)
    case text(String)
    /// A time to the microsecond; finer parts are rounded away when the cursor is encoded.
    case time(Date)
    case uuid(UUID)
    case bool(Bool)

    /// Which case a value is; a list endpoint's sort fixes the kinds its cursor must carry.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case int = 1, double, text, time, uuid, bool
    }

    public var kind: Kind {
        switch self {
        case .int: .int
        case .double: .double
        case .text: .text
        case .time: .time
        case .uuid: .uuid
        case .bool: .bool
        }
    }

    public static func == (lhs: SortKeyValue, rhs: SortKeyValue) -> Bool {
        switch (lhs, rhs) {
        case (.int(let a), .int(let b)): a == b
        case (.double(let a), .double(let b)): a.bitPattern == b.bitPattern
        case (.text(let a), .text(let b)): a == b
        case (.time(let a), .time(let b)): microseconds(a) == microseconds(b)
        case (.uuid(let a), .uuid(let b)): a == b
        case (.bool(let a), .bool(let b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(kind)
        switch self {
        case .int(let value): hasher.combine(value)
        case .double(let value): hasher.combine(value.bitPattern)
        case .text(let value): hasher.combine(value)
        case .time(let value): hasher.combine(Self.microseconds(value))
        case .uuid(let value): hasher.combine(value)
        case .bool(let value): hasher.combine(value)
        }
    }

    // Years 0001...9999: what a cursor may carry, so no conversion below can trap.
    static let microsecondRange: ClosedRange<Int64> = -62_135_596_800_000_000...253_402_300_799_999_999
    /// 2001-01-01, Date's reference, in microseconds since 1970: converting from there keeps every bit of a Date.
    private static let referenceMicroseconds: Int64 = 978_307_200_000_000
    private static let postgresEpoch = Date(timeIntervalSince1970: 946_684_800)
    private static let postgresEpochMicroseconds: Int64 = 946_684_800_000_000

    /// Microseconds since 1970, rounded, clamped to years 0001...9999.
    public static func microseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSinceReferenceDate * 1_000_000).rounded()
        if value.isNaN { return 0 }
        if value >= Double(microsecondRange.upperBound - referenceMicroseconds) { return microsecondRange.upperBound }
        if value <= Double(microsecondRange.lowerBound - referenceMicroseconds) { return microsecondRange.lowerBound }
        return Int64(value) + referenceMicroseconds
    }

    /// The `Date` of a microsecond count, chosen so that binding it with PostgresNIO gives exactly that microsecond.
    ///
    /// PostgresNIO binds a Date as `Int64((date − 2000-01-01) × 10⁶)`, truncating, and the
    /// nearest Date to a microsecond lies a hair below it about a quarter of the time: bound as
    /// the microsecond before, a keyset page would skip or repeat the rows sharing that time.
    /// So step to the adjacent Double until the binding is exact. Between 1933 and 2069 a Date
    /// resolves a quarter of a microsecond, so that Date also reads back (`microseconds`) as the
    /// same microsecond; out to 1865 and 2137 only the binding is kept exact; beyond, a Date
    /// cannot hold every microsecond at all.
    public static func date(microseconds: Int64) -> Date {
        let micros = min(max(microseconds, microsecondRange.lowerBound), microsecondRange.upperBound)
        var interval = Double(micros - referenceMicroseconds) / 1_000_000
        let target = micros - postgresEpochMicroseconds
        for _ in 0..<8 {
            let bound = Int64(Date(timeIntervalSinceReferenceDate: interval).timeIntervalSince(postgresEpoch) * 1_000_000)
            if bound == target { break }
            interval = bound < target ? interval.nextUp : interval.nextDown
        }
        return Date(timeIntervalSinceReferenceDate: interval)
    }
}

/// The position after the last item of a page: its sort key values, then its id as the final tiebreaker.
///
/// A cursor is bound to the list it came from: `encoded(binding:)` embeds a 32-bit fingerprint
/// of a canonical description of the endpoint, sort and filters (see `binding(_:sort:filters:)`),
/// and `decode` refuses a cursor whose fingerprint differs. It is opaque, not secret: the query
/// still applies every filter and visibility rule, so a forged cursor only moves the start.
/// It carries at most 16 sort key values.
public struct KeysetCursor: Sendable, Equatable {
    public var values: [SortKeyValue]
    public var id: UUID

    public init(values: [SortKeyValue], id: UUID) {
        self.values = values
        self.id = id
    }

    // The encoding: version, fingerprint (4 bytes, big-endian), value count, each value as a kind
    // byte and its payload, then the id's 16 bytes; base64url without padding. Integers and times
    // are zigzag varints, doubles their 8 bytes, text a varint length and UTF-8.
    static let version: UInt8 = 1
    /// Longest cursor text accepted; keeps decoding cheap whatever a client sends.
    public static let maximumEncodedLength = 4096
    static let maximumValues = 16

    /// The cursor as the `cursor` query parameter, bound to `binding`.
    public func encoded(binding: String) -> String {
        var bytes: [UInt8] = [Self.version]
        bytes.reserveCapacity(40)
        let fingerprint = Self.fingerprint(binding)
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: fingerprint >> UInt32(shift))) }
        bytes.append(UInt8(truncatingIfNeeded: values.count))
        for value in values {
            bytes.append(value.kind.rawValue)
            switch value {
            case .int(let number): Self.appendVarint(Self.zigzag(number), to: &bytes)
            case .double(let number):
                let bits = number.bitPattern
                for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
            case .text(let text):
                Self.appendVarint(UInt64(text.utf8.count), to: &bytes)
                bytes.append(contentsOf: text.utf8)
            case .time(let date): Self.appendVarint(Self.zigzag(SortKeyValue.microseconds(date)), to: &bytes)
            case .uuid(let uuid): Self.append(uuid, to: &bytes)
            case .bool(let flag): bytes.append(flag ? 1 : 0)
            }
        }
        Self.append(id, to: &bytes)
        return Base64URL.encode(Data(bytes))
    }

    /// Reads a client's cursor for the list described by `binding`, whose sort has `kinds`.
    ///
    /// Every refusal is a 422 on the field `cursor`: "does not belong to this filter and sort"
    /// when it came from another list (or the same list with other filters), "is not a valid
    /// cursor" for anything else.
    public static func decode(_ text: String, binding: String, kinds: [SortKeyValue.Kind]) throws -> KeysetCursor {
        guard !text.isEmpty, text.utf8.count <= maximumEncodedLength, let data = Base64URL.decode(text),
              let (fingerprint, cursor) = parse([UInt8](data)) else {
            throw invalid
        }
        guard fingerprint == Self.fingerprint(binding) else {
            throw Problem.validation([FieldError("cursor", "does not belong to this filter and sort; start again without a cursor")])
        }
        guard cursor.values.count == kinds.count, zip(cursor.values, kinds).allSatisfy({ $0.kind == $1 }) else { throw invalid }
        return cursor
    }

    static var invalid: Problem { Problem.validation([FieldError("cursor", "is not a valid cursor")]) }

    /// A canonical binding: the endpoint, the sort, and the filters that shape the list, in any order.
    ///
    /// Filters are sorted (a repeated parameter is an OR, so its order does not matter) and each
    /// part is length-prefixed, so no two different lists describe themselves the same way.
    /// Leave out `limit` and `cursor`; include every parameter that changes which items match.
    public static func binding(_ endpoint: String, sort: String, filters: [(name: String, value: String)] = []) -> String {
        var text = ""
        func part(_ piece: String) { text += String(piece.utf8.count) + ":" + piece + ";" }
        part(endpoint)
        part(sort)
        for filter in filters.sorted(by: { ($0.name, $0.value) < ($1.name, $1.value) }) {
            part(filter.name)
            part(filter.value)
        }
        return text
    }

    /// FNV-1a 64 of the binding folded to 32 bits: enough to catch a cursor reused on another list.
    static func fingerprint(_ binding: String) -> UInt32 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in binding.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
    }

    /// The fingerprint and cursor in `bytes`, or nil unless they are exactly one well-formed cursor.
    private static func parse(_ bytes: [UInt8]) -> (UInt32, KeysetCursor)? {
        var reader = ByteReader(bytes: bytes)
        guard reader.byte() == version, let fingerprintBytes = reader.bytes(4), let count = reader.byte(), count <= maximumValues else { return nil }
        let fingerprint = fingerprintBytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        var values: [SortKeyValue] = []
        values.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let raw = reader.byte(), let kind = SortKeyValue.Kind(rawValue: raw) else { return nil }
            switch kind {
            case .int:
                guard let encoded = reader.varint() else { return nil }
                values.append(.int(unzigzag(encoded)))
            case .double:
                guard let raw = reader.bytes(8) else { return nil }
                values.append(.double(Double(bitPattern: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case .text:
                guard let length = reader.varint(), length <= UInt64(bytes.count), let raw = reader.bytes(Int(length)),
                      let text = String(validating: raw, as: UTF8.self) else { return nil }
                values.append(.text(text))
            case .time:
                guard let encoded = reader.varint() else { return nil }
                let micros = unzigzag(encoded)
                guard SortKeyValue.microsecondRange.contains(micros) else { return nil }
                values.append(.time(SortKeyValue.date(microseconds: micros)))
            case .uuid:
                guard let uuid = reader.uuid() else { return nil }
                values.append(.uuid(uuid))
            case .bool:
                guard let flag = reader.byte(), flag <= 1 else { return nil }
                values.append(.bool(flag == 1))
            }
        }
        guard let id = reader.uuid(), reader.isAtEnd else { return nil }
        return (fingerprint, KeysetCursor(values: values, id: id))
    }

    private static func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }
    private static func unzigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    private static func append(_ uuid: UUID, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: uuid.uuid) { bytes.append(contentsOf: $0) }
    }
}

/// Reads a cursor's bytes; every read answers nil rather than running past the end.
private struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    var isAtEnd: Bool { offset == bytes.count }

    mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func bytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// An unsigned LEB128 of at most 10 bytes that fits in 64 bits, in its shortest form.
    mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        for index in 0..<10 {
            guard let byte = byte() else { return nil }
            if index == 9, byte > 1 { return nil }
            value |= UInt64(byte & 0x7F) << UInt64(7 * index)
            if byte & 0x80 == 0 { return index > 0 && byte == 0 ? nil : value }
        }
        return nil
    }

    mutating func uuid() -> UUID? {
        guard let raw = bytes(16) else { return nil }
        let b = Array(raw)
        return UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
    }
}

/// The sort of a keyset-paginated list: its `ORDER BY` and the predicate that resumes it after a cursor.
///
/// Keys are SQL expressions written in code (never from input) that must be non-null — sort on
/// `coalesce(…)` where a column is nullable — because a NULL compares as neither before nor after
/// and its row would drop out of every page. The row's id is always the final tiebreaker.
public struct KeysetOrder: Sendable {
    /// One sort key: a trusted SQL expression, the kind of its values, and its direction.
    public struct Key: Sendable {
        public var column: String
        public var kind: SortKeyValue.Kind
        public var descending: Bool

        public init(_ column: String, _ kind: SortKeyValue.Kind, descending: Bool = false) {
            self.column = column
            self.kind = kind
            self.descending = descending
        }
    }

    public var keys: [Key]
    public var idColumn: String
    public var idDescending: Bool

    public init(_ keys: [Key], idColumn: String = "id", idDescending: Bool = false) {
        self.keys = keys
        self.idColumn = idColumn
        self.idDescending = idDescending
    }

    /// The kinds a cursor of this order carries, for `KeysetCursor.decode`.
    public var kinds: [SortKeyValue.Kind] { keys.map(\.kind) }

    /// The `ORDER BY` list (without the keywords): `price ASC, created_at DESC, id ASC`.
    public var orderBy: String {
        (keys.map { ($0.column, $0.descending) } + [(idColumn, idDescending)])
            .map { $0.0 + ($0.1 ? " DESC" : " ASC") }
            .joined(separator: ", ")
    }

    /// The rows after `cursor` in this order, as SQL with numbered placeholders from `firstPlaceholder`
    /// and the values to bind to them, in order (the sort key values, then the id as `.uuid`).
    ///
    /// All keys in one direction give a row comparison, `(a, b, id) > ($1, $2, $3)`, which an index
    /// on `(a, b, id)` answers directly. Mixed directions give the expanded form, led by a bound on
    /// the first key so an index on it still limits the scan:
    /// `(a >= $1 AND (a > $1 OR (a = $1 AND b < $2) OR (a = $1 AND b = $2 AND id > $3)))`.
    /// A cursor with other kinds than the order's is a 422 `cursor` (decoding already refuses it).
    public func predicate(after cursor: KeysetCursor, firstPlaceholder: Int = 1) throws -> KeysetPredicate {
        let (segments, values) = try segments(after: cursor)
        let sql = segments.map { segment -> String in
            switch segment {
            case .sql(let text): text
            case .value(let index): "$" + String(firstPlaceholder + index)
            }
        }.joined()
        return KeysetPredicate(sql: sql, bindings: values)
    }

    /// A piece of a predicate: SQL text, or the value (by its index in the values) compared there.
    enum Segment: Sendable, Equatable {
        case sql(String)
        case value(Int)
    }

    /// The predicate as text and value references, and the values (sort keys, then the id).
    func segments(after cursor: KeysetCursor) throws -> ([Segment], [SortKeyValue]) {
        guard cursor.values.count == keys.count, zip(cursor.values, keys).allSatisfy({ $0.kind == $1.kind }) else {
            throw KeysetCursor.invalid
        }
        let columns = keys.map { Self.operand($0.column) } + [Self.operand(idColumn)]
        let descending = keys.map(\.descending) + [idDescending]
        let values = cursor.values + [.uuid(cursor.id)]

        if descending.allSatisfy({ $0 == descending[0] }) {
            var segments: [Segment] = [.sql("(" + columns.joined(separator: ", ") + ")" + (descending[0] ? " < " : " > ") + "(")]
            for index in values.indices {
                if index > 0 { segments.append(.sql(", ")) }
                segments.append(.value(index))
            }
            segments.append(.sql(")"))
            return (segments, values)
        }
        var segments: [Segment] = [.sql("(" + columns[0] + (descending[0] ? " <= " : " >= ")), .value(0), .sql(" AND (")]
        for index in columns.indices {
            if index > 0 { segments.append(.sql(" OR (")) }
            for equal in 0..<index {
                segments += [.sql(columns[equal] + " = "), .value(equal), .sql(" AND ")]
            }
            segments += [.sql(columns[index] + (descending[index] ? " < " : " > ")), .value(index)]
            if index > 0 { segments.append(.sql(")")) }
        }
        segments.append(.sql("))"))
        return (segments, values)
    }

    /// A column name (possibly qualified or quoted) as is; any other expression in parentheses.
    private static func operand(_ expression: String) -> String {
        let plain = expression.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x5F || byte == 0x2E || byte == 0x22
        }
        return plain ? expression : "(" + expression + ")"
    }
}

/// A keyset predicate: SQL text with numbered placeholders and the values the caller binds to them, in order.
public struct KeysetPredicate: Sendable, Equatable {
    public var sql: String
    public var bindings: [SortKeyValue]
}

/// The `?limit=&cursor=` of a list sorted by a `KeysetOrder`, its cursor bound to the list's filter and sort.
///
/// Every list of the suite pages this way: it reads the raw `cursor` text itself and decodes it
/// with the binding, which only the service knows.
public struct KeysetPageRequest: Sendable {
    /// The most items one page may hold (API.md: `limit` 1 to 100, default 20).
    public static let maximumLimit = 100

    public var limit: Int
    public var after: KeysetCursor?
    public let order: KeysetOrder
    public let binding: String

    public init(limit: Int = 20, cursor: String?, order: KeysetOrder, binding: String) throws {
        guard (1...KeysetPageRequest.maximumLimit).contains(limit) else {
            throw Problem.validation([FieldError("limit", "must be an integer from 1 to \(KeysetPageRequest.maximumLimit)")])
        }
        self.limit = limit
        self.order = order
        self.binding = binding
        after = try cursor.map { try KeysetCursor.decode($0, binding: binding, kinds: order.kinds) }
    }

    public init(_ request: Request, order: KeysetOrder, binding: String, defaultLimit: Int = 20) throws {
        let limit = try request.queryInt("limit", default: defaultLimit, range: 1...KeysetPageRequest.maximumLimit)
        try self.init(limit: limit, cursor: request.queryString("cursor"), order: order, binding: binding)
    }

    /// Rows are fetched `limit + 1` at a time; the extra row only says that another page exists.
    public var fetchLimit: Int { limit + 1 }

    /// The predicate resuming after the cursor (placeholders from `firstPlaceholder`), or nil on the first page.
    public func predicate(firstPlaceholder: Int = 1) throws -> KeysetPredicate? {
        try after.map { try order.predicate(after: $0, firstPlaceholder: firstPlaceholder) }
    }

    /// The page of `rows` (fetched with `fetchLimit`, in `order`), its next cursor taken from the last item kept.
    public func page<Item>(_ rows: [Item], position: (Item) -> KeysetCursor) -> Page<Item> {
        guard rows.count > limit else { return Page(items: rows, nextCursor: nil) }
        let items = Array(rows.prefix(limit))
        return Page(items: items, nextCursor: items.last.map { position($0).encoded(binding: binding) })
    }
}

extension PostgresQuery.StringInterpolation {
    /// `\(after: page)` in a query: the rows after the page's cursor, its values bound in place;
    /// `true` on the first page. Use with `ORDER BY \(unescaped: page.order.orderBy)`.
    public mutating func appendInterpolation(after page: KeysetPageRequest) {
        guard let cursor = page.after, let (segments, values) = try? page.order.segments(after: cursor) else {
            appendLiteral("true")
            return
        }
        for segment in segments {
            switch segment {
            case .sql(let text): appendLiteral(text)
            case .value(let index):
                switch values[index] {
                case .int(let value): appendInterpolation(value)
                case .double(let value): appendInterpolation(value)
                case .text(let value): appendInterpolation(value)
                case .time(let value): appendInterpolation(value)
                case .uuid(let value): appendInterpolation(value)
                case .bool(let value): appendInterpolation(value)
                }
            }
        }
    }
}
