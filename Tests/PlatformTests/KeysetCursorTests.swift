import Foundation
import Hummingbird
import Testing
@testable import Platform

@Suite struct KeysetCursorTests {
    static let binding = KeysetCursor.binding("GET /v1/listings", sort: "price_asc", filters: [("category", "dogs"), ("attr.sex", "female")])
    static let notValid = Problem.validation([FieldError("cursor", "is not a valid cursor")])
    static let foreign = Problem.validation([FieldError("cursor", "does not belong to this filter and sort; start again without a cursor")])

    /// A GET request with `query` (already URL-safe: cursors are base64url).
    func request(_ query: String) -> Request {
        Request(head: HTTPRequest(method: .get, scheme: "http", authority: "localhost", path: "/v1/listings" + query), body: RequestBody(buffer: ByteBuffer()))
    }

    func roundTrip(_ values: [SortKeyValue], id: UUID = UUID()) throws -> [SortKeyValue] {
        let cursor = KeysetCursor(values: values, id: id)
        let text = cursor.encoded(binding: Self.binding)
        #expect(!text.contains("=") && text.utf8.allSatisfy { $0 == 0x2D || $0 == 0x5F || (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) })
        let decoded = try KeysetCursor.decode(text, binding: Self.binding, kinds: values.map(\.kind))
        #expect(decoded == cursor)
        return decoded.values
    }

    // MARK: Round trips

    @Test func everyKindRoundTripsExactly() throws {
        let nan = Double(bitPattern: 0x7FF8_0000_0000_1234)
        let values: [SortKeyValue] = [
            .int(0), .int(-1), .int(.min), .int(.max), .int(300),
            .double(0), .double(-0.0), .double(1.5), .double(-.infinity), .double(.leastNonzeroMagnitude), .double(nan), .double(0.1 + 0.2),
            .text(""), .text("Labrador"), .text("é🐕‍🦺\u{0}\n\"'%\\"), .text(String(repeating: "ẞ", count: 300)),
            .time(Date(timeIntervalSince1970: 1_795_255_200.123456)), .time(Date(timeIntervalSince1970: -1)),
            .uuid(UUID()), .bool(true), .bool(false),
        ]
        let decoded = try roundTrip(Array(values.prefix(16))) + roundTrip(Array(values.dropFirst(16)))
        guard case .double(let back) = decoded[10] else { Issue.record("not a double"); return }
        #expect(back.bitPattern == nan.bitPattern)
        guard case .double(let zero) = decoded[6] else { Issue.record("not a double"); return }
        #expect(zero.sign == .minus)
        for value in values { _ = try roundTrip([value]) }
        _ = try roundTrip([])
        // At most 16 sort keys: more is refused rather than read in part.
        let seventeen = KeysetCursor(values: Array(repeating: .int(1), count: 17), id: UUID()).encoded(binding: "b")
        #expect(throws: Self.notValid) { try KeysetCursor.decode(seventeen, binding: "b", kinds: Array(repeating: .int, count: 17)) }
    }

    @Test func timesKeepMicrosecondsAndBindToThemExactly() throws {
        // What PostgresNIO does with a Date: encode truncating since 2000-01-01; decode from microseconds.
        let postgresEpoch = Date(timeIntervalSince1970: 946_684_800)
        func bound(_ date: Date) -> Int64 { Int64(date.timeIntervalSince(postgresEpoch) * 1_000_000) }
        func fromPostgres(_ micros: Int64) -> Date { Date(timeInterval: Double(micros) / 1_000_000, since: postgresEpoch) }

        var generator = SeededGenerator(seed: 7)
        for round in 0..<40_000 {
            // Microseconds since 2000, as Postgres stores them: 1933...2068, where a Date resolves a
            // quarter microsecond, then 1867...2133, where only the binding can be kept exact.
            let stored = round < 20_000 ? Int64.random(in: -2_100_000_000_000_000...2_145_000_000_000_000, using: &generator)
                                        : Int64.random(in: -4_200_000_000_000_000...4_200_000_000_000_000, using: &generator)
            let row = fromPostgres(stored)
            let cursor = KeysetCursor(values: [.time(row)], id: UUID())
            let decoded = try KeysetCursor.decode(cursor.encoded(binding: "b"), binding: "b", kinds: [.time])
            guard case .time(let date) = decoded.values[0] else { Issue.record("not a time"); return }
            #expect(bound(date) == stored, "stored \(stored)")
            if round < 20_000 {
                #expect(SortKeyValue.microseconds(row) == stored + 946_684_800_000_000)
                #expect(SortKeyValue.microseconds(date) == stored + 946_684_800_000_000)
                #expect(decoded.values[0] == .time(row))
            }
        }
        // Sub-microsecond parts are rounded away, and values still compare equal to the microsecond.
        #expect(SortKeyValue.time(Date(timeIntervalSince1970: 10.000_000_4)) == .time(Date(timeIntervalSince1970: 10)))
        #expect(SortKeyValue.time(Date(timeIntervalSince1970: 10.000_001)) != .time(Date(timeIntervalSince1970: 10)))
        #expect(SortKeyValue.microseconds(Date(timeIntervalSince1970: .infinity)) == SortKeyValue.microsecondRange.upperBound)
        #expect(SortKeyValue.microseconds(.distantPast) == SortKeyValue.microsecondRange.lowerBound)
        #expect(SortKeyValue.microseconds(Date(timeIntervalSince1970: .nan)) == 0)
    }

    @Test func aTimeAndIdCursorIsCompact() {
        let cursor = KeysetCursor(values: [.time(Date())], id: UUID())
        #expect(cursor.encoded(binding: Self.binding).count <= 44)
        #expect(KeysetCursor(values: [.int(125_000), .time(Date())], id: UUID()).encoded(binding: Self.binding).count <= 48)
    }

    // MARK: Refusals

    @Test func aCursorFromAnotherFilterOrSortIsRefused() throws {
        let text = KeysetCursor(values: [.int(5)], id: UUID()).encoded(binding: Self.binding)
        let other = KeysetCursor.binding("GET /v1/listings", sort: "price_asc", filters: [("category", "cats"), ("attr.sex", "female")])
        #expect(throws: Self.foreign) { try KeysetCursor.decode(text, binding: other, kinds: [.int]) }
        #expect(throws: Self.foreign) { try KeysetCursor.decode(text, binding: KeysetCursor.binding("GET /v1/listings", sort: "price_desc"), kinds: [.int]) }
        // Filter order does not matter; the binding is canonical.
        let reordered = KeysetCursor.binding("GET /v1/listings", sort: "price_asc", filters: [("attr.sex", "female"), ("category", "dogs")])
        #expect(try KeysetCursor.decode(text, binding: reordered, kinds: [.int]).values == [.int(5)])
    }

    @Test func bindingsDoNotRunTogether() {
        #expect(KeysetCursor.binding("a", sort: "b", filters: [("c", "d")]) != KeysetCursor.binding("a", sort: "b", filters: [("c", ""), ("", "d")]))
        #expect(KeysetCursor.binding("ab", sort: "c") != KeysetCursor.binding("a", sort: "bc"))
        #expect(KeysetCursor.binding("a", sort: "b", filters: [("x", "1"), ("x", "2")]) == KeysetCursor.binding("a", sort: "b", filters: [("x", "2"), ("x", "1")]))
    }

    static func bytesCursor(_ body: [UInt8], binding: String = binding) -> String {
        let fingerprint = KeysetCursor.fingerprint(binding)
        let header: [UInt8] = [1, UInt8(fingerprint >> 24), UInt8(fingerprint >> 16 & 0xFF), UInt8(fingerprint >> 8 & 0xFF), UInt8(fingerprint & 0xFF)]
        return Base64URL.encode(Data(header + body))
    }

    static let id16 = [UInt8](repeating: 7, count: 16)

    @Test(arguments: [
        "0", "%%%", "", "!", "not-a-cursor", "eyJ0b3RhbGx5IjoiYm9ndXMifQ", "AAAA", "AA==", "A", String(repeating: "A", count: 5000),
        "élan", "YQ", Base64URL.encode(Data("1795255200123456:0192f1a0-0000-7000-8000-000000000001".utf8)),
        bytesCursor([1, 1, 10] + id16),                       // one int where the sort has a time
        bytesCursor([2, 1, 10, 1, 11] + id16),                // two values where the sort has one
        bytesCursor([0] + id16),                              // no value
        bytesCursor([1, 4, 10]),                              // no id
        bytesCursor([1, 4, 10] + id16 + [0]),                 // a byte too many
        bytesCursor([1, 4, 0x80, 0x00] + id16),               // a varint not in its shortest form
        bytesCursor([1, 4] + [UInt8](repeating: 0xFF, count: 10) + id16),  // a varint beyond 64 bits
        bytesCursor([1, 4, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01] + id16),  // a time beyond year 9999
        bytesCursor([1, 9, 0] + id16),                        // an unknown kind
        bytesCursor([200] + id16),                            // too many values
        [2, 0, 0, 0, 0, 0].withUnsafeBytes { Base64URL.encode(Data($0)) },  // another version
    ])
    func garbageIsA422NamingTheCursor(text: String) {
        #expect(throws: Self.notValid) { try KeysetCursor.decode(text, binding: Self.binding, kinds: [.time]) }
    }

    @Test func malformedValuesAreA422() {
        let badBool = Self.bytesCursor([1, 6, 2] + Self.id16)
        #expect(throws: Self.notValid) { try KeysetCursor.decode(badBool, binding: Self.binding, kinds: [.bool]) }
        let badUTF8 = Self.bytesCursor([1, 3, 2, 0xC3, 0x28] + Self.id16)
        #expect(throws: Self.notValid) { try KeysetCursor.decode(badUTF8, binding: Self.binding, kinds: [.text]) }
        let shortText = Self.bytesCursor([1, 3, 100, 0x41] + Self.id16)
        #expect(throws: Self.notValid) { try KeysetCursor.decode(shortText, binding: Self.binding, kinds: [.text]) }
        let shortDouble = Self.bytesCursor([1, 2, 0, 0, 0] + Self.id16)
        #expect(throws: Self.notValid) { try KeysetCursor.decode(shortDouble, binding: Self.binding, kinds: [.double]) }
        let good = Self.bytesCursor([1, 6, 1] + Self.id16)
        #expect((try? KeysetCursor.decode(good, binding: Self.binding, kinds: [.bool]))?.values == [.bool(true)])
    }

    @Test func noInputCrashesTheDecoder() {
        var generator = SeededGenerator(seed: 99)
        let valid = [UInt8](Base64URL.decode(KeysetCursor(values: [.text("abc"), .time(Date()), .double(2), .uuid(UUID())], id: UUID())
            .encoded(binding: Self.binding))!)
        for round in 0..<20_000 {
            var bytes = valid
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0...60, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
                if Bool.random(using: &generator) { bytes.removeLast(Int.random(in: 0...bytes.count, using: &generator)) }
            }
            do {
                _ = try KeysetCursor.decode(Base64URL.encode(Data(bytes)), binding: Self.binding, kinds: [.text, .time, .double, .uuid])
            } catch let problem as Problem {
                #expect(problem.kind == .validationFailed && problem.fieldErrors.map(\.field) == ["cursor"])
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }

    // MARK: SQL

    @Test func oneDirectionIsARowComparison() throws {
        let cursor = KeysetCursor(values: [.int(125_000)], id: UUID())
        let ascending = KeysetOrder([.init("price_amount", .int)])
        #expect(ascending.orderBy == "price_amount ASC, id ASC")
        #expect(try ascending.predicate(after: cursor) == KeysetPredicate(sql: "(price_amount, id) > ($1, $2)", bindings: [.int(125_000), .uuid(cursor.id)]))

        let newest = KeysetOrder([.init("l.published_at", .time, descending: true)], idColumn: "l.id", idDescending: true)
        let time = KeysetCursor(values: [.time(Date(timeIntervalSince1970: 5))], id: cursor.id)
        #expect(newest.orderBy == "l.published_at DESC, l.id DESC")
        #expect(try newest.predicate(after: time, firstPlaceholder: 5).sql == "(l.published_at, l.id) < ($5, $6)")

        let idOnly = KeysetOrder([], idColumn: "\"id\"")
        #expect(try idOnly.predicate(after: KeysetCursor(values: [], id: cursor.id), firstPlaceholder: 3).sql == "(\"id\") > ($3)")
        #expect(idOnly.orderBy == "\"id\" ASC")
    }

    @Test func mixedDirectionsAreExpandedBehindABoundOnTheFirstKey() throws {
        let id = UUID()
        let order = KeysetOrder([.init("a", .int), .init("b", .text, descending: true)])
        let predicate = try order.predicate(after: KeysetCursor(values: [.int(1), .text("x")], id: id))
        #expect(predicate.sql == "(a >= $1 AND (a > $1 OR (a = $1 AND b < $2) OR (a = $1 AND b = $2 AND id > $3)))")
        #expect(predicate.bindings == [.int(1), .text("x"), .uuid(id)])
        #expect(order.orderBy == "a ASC, b DESC, id ASC")

        let firstDescending = KeysetOrder([.init("coalesce(rating, 0)", .double, descending: true)], idColumn: "v.id")
        #expect(try firstDescending.predicate(after: KeysetCursor(values: [.double(4.5)], id: id), firstPlaceholder: 7).sql
                == "((coalesce(rating, 0)) <= $7 AND ((coalesce(rating, 0)) < $7 OR ((coalesce(rating, 0)) = $7 AND v.id > $8)))")
        #expect(firstDescending.orderBy == "coalesce(rating, 0) DESC, v.id ASC")
    }

    @Test func aCursorOfOtherKindsCannotMakeAPredicate() {
        let order = KeysetOrder([.init("a", .int)])
        #expect(throws: Self.notValid) { try order.predicate(after: KeysetCursor(values: [.text("1")], id: UUID())) }
        #expect(throws: Self.notValid) { try order.predicate(after: KeysetCursor(values: [], id: UUID())) }
    }

    // MARK: Page requests

    @Test func pageRequestsReadLimitAndCursor() throws {
        let order = KeysetOrder([.init("price", .int)])
        let first = try KeysetPageRequest(request(""), order: order, binding: Self.binding)
        #expect(first.limit == 20 && first.after == nil && first.fetchLimit == 21)
        #expect(try first.predicate() == nil)

        let rows = (0..<4).map { (price: Int64($0), id: UUID()) }
        let page = try KeysetPageRequest(limit: 3, cursor: nil, order: order, binding: Self.binding)
            .page(rows.map { "\($0.price)|\($0.id)" }) { text in
                let row = rows.first { "\($0.price)|\($0.id)" == text }!
                return KeysetCursor(values: [.int(row.price)], id: row.id)
            }
        #expect(page.items.count == 3)
        let next = try #require(page.nextCursor)
        let second = try KeysetPageRequest(request("?limit=3&cursor=" + next), order: order, binding: Self.binding)
        #expect(second.after == KeysetCursor(values: [.int(2)], id: rows[2].id))
        #expect(try second.predicate(firstPlaceholder: 2) == KeysetPredicate(sql: "(price, id) > ($2, $3)", bindings: [.int(2), .uuid(rows[2].id)]))
        #expect(second.page(Array(rows.prefix(2)).map(\.price)) { _ in KeysetCursor(values: [], id: UUID()) }.nextCursor == nil)

        #expect(throws: Problem.validation([FieldError("limit", "must be an integer from 1 to 100")])) {
            try KeysetPageRequest(request("?limit=0"), order: order, binding: Self.binding)
        }
        #expect(throws: Problem.validation([FieldError("limit", "must be an integer from 1 to 100")])) {
            try KeysetPageRequest(limit: 101, cursor: nil, order: order, binding: Self.binding)
        }
        #expect(throws: Self.notValid) { try KeysetPageRequest(request("?cursor="), order: order, binding: Self.binding) }
        #expect(throws: Self.foreign) { try KeysetPageRequest(request("?cursor=" + next), order: order, binding: "other") }
        let otherSort = KeysetOrder([.init("published_at", .time)])
        #expect(throws: Self.notValid) { try KeysetPageRequest(request("?cursor=" + next), order: otherSort, binding: Self.binding) }
    }

    // MARK: Paging through a changing table

    struct Row: Encodable, Sendable, Hashable {
        var price: Int64
        var publishedAt: Date
        var title: String
        var id: UUID

        func value(of column: String) -> SortKeyValue {
            switch column {
            case "price": .int(price)
            case "published_at": .time(publishedAt)
            case "title": .text(title)
            default: .uuid(id)
            }
        }
    }

    /// Postgres's ordering of two values of one kind (no NULLs: keys are non-null by contract).
    static func compare(_ a: SortKeyValue, _ b: SortKeyValue) -> Int {
        func sign<T: Comparable>(_ x: T, _ y: T) -> Int { x < y ? -1 : x > y ? 1 : 0 }
        switch (a, b) {
        case (.int(let x), .int(let y)): return sign(x, y)
        case (.double(let x), .double(let y)): return sign(x, y)
        case (.text(let x), .text(let y)):  // byte-wise, as under COLLATE "C"
            let xs = Array(x.utf8), ys = Array(y.utf8)
            return xs == ys ? 0 : xs.lexicographicallyPrecedes(ys) ? -1 : 1
        case (.time(let x), .time(let y)): return sign(SortKeyValue.microseconds(x), SortKeyValue.microseconds(y))
        case (.bool(let x), .bool(let y)): return sign(x ? 1 : 0, y ? 1 : 0)
        case (.uuid(let x), .uuid(let y)):  // uuid ordering is byte-wise
            let xs = withUnsafeBytes(of: x.uuid) { Array($0) }, ys = withUnsafeBytes(of: y.uuid) { Array($0) }
            return xs == ys ? 0 : xs.lexicographicallyPrecedes(ys) ? -1 : 1
        default: return 0
        }
    }

    static func sorted(_ rows: [Row], _ order: KeysetOrder) -> [Row] {
        let columns = order.keys.map { ($0.column, $0.descending) } + [(order.idColumn, order.idDescending)]
        return rows.sorted { a, b in
            for (column, descending) in columns {
                let result = compare(a.value(of: column), b.value(of: column))
                if result != 0 { return descending ? result > 0 : result < 0 }
            }
            return false
        }
    }

    static let orders = [
        KeysetOrder([.init("price", .int), .init("published_at", .time, descending: true)]),
        KeysetOrder([.init("price", .int, descending: true), .init("title", .text)], idDescending: true),
        KeysetOrder([.init("published_at", .time, descending: true)], idDescending: true),
        KeysetOrder([.init("price", .int), .init("title", .text)]),
        KeysetOrder([.init("title", .text, descending: true)], idDescending: false),
        KeysetOrder([.init("price", .int), .init("title", .text, descending: true), .init("published_at", .time)], idDescending: true),
    ]

    @Test(arguments: 0..<orders.count)
    func pagingNeverSkipsNorRepeatsWhileRowsArrive(orderIndex: Int) throws {
        let order = Self.orders[orderIndex]
        var generator = SeededGenerator(seed: UInt64(orderIndex) + 1)
        func randomRow() -> Row {
            // Few distinct prices, times and titles, so ties on the sort keys are common.
            Row(price: Int64.random(in: 0...5, using: &generator) * 100,
                publishedAt: Date(timeIntervalSince1970: 1_795_000_000 + Double(Int.random(in: 0...4, using: &generator)) * 0.000_001 * 333_333),
                title: ["Beagle", "beagle", "Bé", "Ça", "pup"].randomElement(using: &generator)!, id: UUID())
        }
        for _ in 0..<10 {
            var table = (0..<Int.random(in: 0...60, using: &generator)).map { _ in randomRow() }
            let original = Set(table)
            var seen: [Row] = []
            var cursorText: String?
            let limit = Int.random(in: 1...7, using: &generator)
            for _ in 0..<200 {
                let request = try KeysetPageRequest(limit: limit, cursor: cursorText, order: order, binding: "sim")
                let predicate = try request.predicate(firstPlaceholder: 1)
                let tokens = predicate.map { SQLPredicate.tokenize($0.sql) }
                let matching = try table.filter { row in
                    guard let predicate, let tokens else { return true }
                    return try SQLPredicate.evaluate(tokens, bindings: predicate.bindings, row: row.value(of:))
                }
                let page = request.page(Array(Self.sorted(matching, order).prefix(request.fetchLimit))) { row in
                    KeysetCursor(values: order.keys.map { row.value(of: $0.column) }, id: row.id)
                }
                seen += page.items
                guard let next = page.nextCursor else { break }
                cursorText = next
                for _ in 0..<Int.random(in: 0...3, using: &generator) { table.append(randomRow()) }
            }
            #expect(Set(seen).count == seen.count, "a row was repeated")
            #expect(original.isSubset(of: Set(seen)), "a row present from the start was skipped")
            #expect(Self.sorted(seen, order) == seen, "pages came out of order")
        }
    }
}

/// Evaluates the predicates `KeysetOrder` writes (comparisons, row comparisons, AND, OR, parentheses)
/// the way Postgres would, against one row: the SQL text itself is tested, not a second implementation.
enum SQLPredicate {
    struct Failure: Error { var message: String }

    static func evaluate(_ tokens: [String], bindings: [SortKeyValue], row: @escaping (String) -> SortKeyValue) throws -> Bool {
        var parser = Parser(tokens: tokens, bindings: bindings, row: row)
        let result = try parser.expression()
        guard parser.position == parser.tokens.count else { throw Failure(message: "trailing tokens in \(tokens)") }
        return result
    }

    static func tokenize(_ sql: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var characters = Array(sql)[...]
        func flush() { if !current.isEmpty { tokens.append(current); current = "" } }
        while let character = characters.popFirst() {
            switch character {
            case " ": flush()
            case "(", ")", ",": flush(); tokens.append(String(character))
            case ">", "<":
                flush()
                if characters.first == "=" { characters.removeFirst(); tokens.append(String(character) + "=") } else { tokens.append(String(character)) }
            case "=": flush(); tokens.append("=")
            default: current.append(character)
            }
        }
        flush()
        return tokens
    }

    struct Parser {
        let tokens: [String]
        let bindings: [SortKeyValue]
        let row: (String) -> SortKeyValue
        var position = 0

        var next: String? { position < tokens.count ? tokens[position] : nil }

        mutating func expect(_ token: String) throws {
            guard next == token else { throw Failure(message: "expected \(token) at \(position), found \(next ?? "end")") }
            position += 1
        }

        mutating func expression() throws -> Bool {
            var result = try conjunction()
            while next == "OR" { position += 1; result = try conjunction() || result }
            return result
        }

        mutating func conjunction() throws -> Bool {
            var result = try primary()
            while next == "AND" { position += 1; result = try primary() && result }
            return result
        }

        mutating func primary() throws -> Bool {
            if next == "(" {
                let start = position
                if let row = try? rowComparison() { return row }
                position = start + 1
                let result = try expression()
                try expect(")")
                return result
            }
            let left = try operand()
            let comparison = try comparator()
            return comparison(KeysetCursorTests.compare(left, try operand()))
        }

        mutating func rowComparison() throws -> Bool {
            let left = try list(), comparison = try comparator(), right = try list()
            guard left.count == right.count else { throw Failure(message: "row sizes differ") }
            for (a, b) in zip(left, right) {
                let result = KeysetCursorTests.compare(a, b)
                if result != 0 { return comparison(result) }
            }
            return comparison(0)
        }

        mutating func list() throws -> [SortKeyValue] {
            try expect("(")
            var values = [try operand()]
            while next == "," { position += 1; values.append(try operand()) }
            try expect(")")
            return values
        }

        mutating func comparator() throws -> (Int) -> Bool {
            guard let token = next else { throw Failure(message: "expected a comparison") }
            position += 1
            switch token {
            case ">": return { $0 > 0 }
            case "<": return { $0 < 0 }
            case ">=": return { $0 >= 0 }
            case "<=": return { $0 <= 0 }
            case "=": return { $0 == 0 }
            default: throw Failure(message: "not a comparison: \(token)")
            }
        }

        mutating func operand() throws -> SortKeyValue {
            guard let token = next, !["(", ")", ",", "AND", "OR", ">", "<", ">=", "<=", "="].contains(token) else {
                throw Failure(message: "expected an operand at \(position)")
            }
            position += 1
            if token.hasPrefix("$") {
                guard let index = Int(token.dropFirst()), bindings.indices.contains(index - 1) else { throw Failure(message: "no binding \(token)") }
                return bindings[index - 1]
            }
            return row(token)
        }
    }
}
