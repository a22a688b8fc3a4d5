import Contracts
import Foundation
import Platform
import Testing

/// The suite's one JSON encoding: explicit nulls, lower-case UUIDs, RFC 3339 times, sorted keys.
struct JSONWriterTests {
    struct Location: Codable, Equatable { var city: String; var region: String? }
    struct Listing: Codable, Equatable {
        var id: UUID
        var title: String
        var parentId: UUID?
        var price: Int64
        var rating: Double?
        var publishedAt: Date?
        var location: Location
        var tags: [String]
        var photos: [String?]
    }

    static let id = UUID(uuidString: "0192F1A0-AAAA-7000-8000-0000000000A1")!

    @Test func absentOptionalsAreExplicitNullsAtEveryDepth() throws {
        let listing = Listing(id: Self.id, title: "Puppy", parentId: nil, price: 125_000, rating: nil, publishedAt: nil,
                              location: Location(city: "York", region: nil), tags: [], photos: [nil, "a.jpg"])
        #expect(try JSONWriter.string(listing) == """
            {"id":"0192f1a0-aaaa-7000-8000-0000000000a1","location":{"city":"York","region":null},"parentId":null,\
            "photos":[null,"a.jpg"],"price":125000,"publishedAt":null,"rating":null,"tags":[],"title":"Puppy"}
            """)
    }

    @Test func presentValuesUseTheWireForms() throws {
        let published = Date(timeIntervalSince1970: 1_795_255_200.5)
        let listing = Listing(id: Self.id, title: "A/B \"quoted\"\n\u{1}", parentId: Self.id, price: -1, rating: 4.5, publishedAt: published,
                              location: Location(city: "Zürich", region: "ZH"), tags: ["é"], photos: [])
        let text = try JSONWriter.string(listing)
        #expect(text.contains(#""publishedAt":"2026-11-21T10:00:00.500Z""#))
        #expect(text.contains(#""parentId":"0192f1a0-aaaa-7000-8000-0000000000a1""#))
        #expect(text.contains(#""title":"A/B \"quoted\"\n\u0001""#), "slashes unescaped, quotes and controls escaped")
        #expect(text.contains(#""rating":4.5"#) && text.contains(#""city":"Zürich""#))
        // And it is JSON every reader agrees with: Foundation decodes it back to the same value.
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601withFractions
        #expect(try decoder.decode(Listing.self, from: Data(text.utf8)) == listing)
    }

    @Test func contractPayloadsDefinedOutsideThePlatformAreLowerCaseToo() throws {
        // Contracts does not import Platform: before JSONWriter, these UUIDs went out upper-case.
        let payload = SessionsRevokedV1(userId: Self.id, sessionIds: [Self.id], notBefore: Date(timeIntervalSince1970: 0),
                                        keptSessionId: nil, reason: "logout", scope: .sessions)
        let text = try JSONWriter.string(payload)
        #expect(!text.contains("AAAA") && text.contains("0192f1a0-aaaa"))
        #expect(text.contains(#""keptSessionId":null"#))
    }

    @Test func integralDoublesAreWrittenWithoutAFractionAndNonFiniteOnesRefused() throws {
        #expect(try JSONWriter.string([1.0, 2.5, -0.25, 1e20]) == "[1,2.5,-0.25,1e+20]")
        #expect(throws: EncodingError.self) { try JSONWriter.string([Double.nan]) }
        #expect(throws: EncodingError.self) { try JSONWriter.string(["x": Double.infinity]) }
    }

    @Test func keysAreSortedSoEqualValuesEncodeToEqualBytes() throws {
        let first = try JSONWriter.string(["b": 1, "a": 2, "ä": 3, "B": 4])
        #expect(first == #"{"B":4,"a":2,"b":1,"ä":3}"#)
        #expect(try JSONWriter.string(JSONValue.object(["z": .null, "y": .array([.bool(true), .string("x")])])) == #"{"y":[true,"x"],"z":null}"#)
    }

    @Test func enumsWithAssociatedValuesAndNestedContainersEncode() throws {
        enum Shape: Codable { case circle(radius: Int), square(side: Int?) }
        #expect(try JSONWriter.string([Shape.circle(radius: 2), .square(side: nil)]) == #"[{"circle":{"radius":2}},{"square":{"side":null}}]"#)
    }

    @Test func randomDocumentsSurviveARoundTripThroughFoundation() throws {
        var generator = SystemRandomNumberGenerator()
        func value(depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 2 ? 4 : 6), using: &generator) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &generator))
            case 2: return .number(Double(Int.random(in: -1_000_000...1_000_000, using: &generator)) / 8)
            case 3: return .string(String((0..<Int.random(in: 0...12, using: &generator)).map { _ in
                "aé\"\\/\n\t😀\u{7}z".randomElement(using: &generator)! }))
            case 4: return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in value(depth: depth + 1) })
            default:
                return .object(Dictionary((0..<Int.random(in: 0...4, using: &generator)).map { ("k\($0)", value(depth: depth + 1)) },
                                          uniquingKeysWith: { first, _ in first }))
            }
        }
        for _ in 0..<500 {
            let document = value(depth: 0)
            let bytes = try JSONWriter.encode(document)
            #expect(try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) == document)
        }
    }
}

extension JSONDecoder.DateDecodingStrategy {
    static let iso8601withFractions = custom { decoder in
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let date = EventCoding.parseTime(text) else { throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: text)) }
        return date
    }
}
