import Contracts
import Foundation
import Kafka
import Testing
@testable import Platform

@Suite struct CloudEventTests {
    @Test func binaryModeHeadersRoundTrip() throws {
        let time = Date(timeIntervalSince1970: 1_795_000_000.125)
        let event = CloudEvent(id: "0192f1a0-0000-7000-8000-0000000000ff", type: EventTypes.userRegistered,
                               source: EventSources.identity, time: time, subject: "users/42",
                               traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", data: Array("{}".utf8))
        let headers = Dictionary(uniqueKeysWithValues: event.kafkaHeaders.map { ($0.key, String(decoding: $0.value ?? [], as: UTF8.self)) })
        #expect(headers["ce_specversion"] == "1.0")
        #expect(headers["ce_id"] == event.id)
        #expect(headers["ce_type"] == "marketplace.identity.user.registered.v1")
        #expect(headers["ce_source"] == "/marketplace/identity")
        #expect(headers["ce_subject"] == "users/42")
        #expect(headers["ce_time"] == "2026-11-18T11:06:40.125Z")
        #expect(headers["content-type"] == "application/json")
        #expect(headers["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        let decoded = try CloudEvent(headers: event.kafkaHeaders, value: event.data)
        #expect(decoded == event)
    }

    @Test func missingAttributesAreReported() {
        let headers = [KafkaHeader(key: "ce_specversion", value: Array("1.0".utf8)), KafkaHeader(key: "ce_id", value: Array("1".utf8))]
        #expect(throws: CloudEvent.DecodingFailure.missingAttribute("ce_time")) { try CloudEvent(headers: headers, value: []) }
        #expect(throws: CloudEvent.DecodingFailure.missingAttribute("ce_specversion")) { try CloudEvent(headers: [], value: []) }
        let wrongVersion = [KafkaHeader(key: "ce_specversion", value: Array("0.3".utf8))]
        #expect(throws: CloudEvent.DecodingFailure.unsupportedSpecVersion("0.3")) { try CloudEvent(headers: wrongVersion, value: []) }
    }

    @Test func timesAcceptRFC3339WithAndWithoutFraction() {
        #expect(EventCoding.parseTime("2026-11-21T10:00:00Z") == Date(timeIntervalSince1970: 1_795_255_200))
        #expect(EventCoding.parseTime("2026-11-21T10:00:00.500Z") == Date(timeIntervalSince1970: 1_795_255_200.5))
        #expect(EventCoding.parseTime("yesterday") == nil)
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/events").standardized

    /// The fixture files of a contract: `<type without "marketplace.">.json`, plus variants
    /// (`<…>.v1.<variant>.json`) showing other shapes of the same payload.
    static func fixtureFiles(of contract: any AnyEventContract) throws -> [String] {
        let base = String(contract.type.dropFirst("marketplace.".count))
        return try FileManager.default.contentsOfDirectory(atPath: fixtures.path)
            .filter { $0 == base + ".json" || ($0.hasPrefix(base + ".") && $0.hasSuffix(".json")) }.sorted()
    }

    /// Every contract has a fixture, and every fixture belongs to a contract.
    @Test func everyContractHasAFixtureAndEveryFixtureAContract() throws {
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: Self.fixtures.path).filter { $0.hasSuffix(".json") })
        var claimed: Set<String> = []
        for contract in EventCatalog.all {
            let own = try Self.fixtureFiles(of: contract)
            #expect(!own.isEmpty, "no fixture for \(contract.type)")
            claimed.formUnion(own)
        }
        #expect(files == claimed, "fixtures without a contract: \(files.subtracting(claimed).sorted())")
        #expect(Set(EventCatalog.all.map(\.type)).count == EventCatalog.all.count, "two contracts share a type")
    }

    /// Every published payload version keeps decoding, and today's encoder writes exactly the
    /// fixture back: lower-case UUIDs, the same time format, the same member names. The one
    /// allowance: a member the fixture omits may come back as `null` (the suite writes absent values
    /// as explicit nulls; readers treat the two alike, and fixtures published before that omit them).
    /// Fixtures are never edited, only added.
    @Test func fixturesDecodeAndTheirWireFormIsWhatTheEncoderWrites() throws {
        for contract in EventCatalog.all {
            let reencoder = try #require(contract as? any Reencoding)
            for file in try Self.fixtureFiles(of: contract) {
                let data = try Data(contentsOf: Self.fixtures.appendingPathComponent(file))
                let written = try JSONValue(data: Data(try reencoder.reencode(data)))
                let fixture = try JSONValue(data: data)
                let shown = (try? JSONWriter.string(written)) ?? "?"
                #expect(Self.sameWireForm(written, fixture), "\(file): the encoder wrote \(shown)")
            }
        }
    }

    /// Equal JSON, except that `null` in `written` matches a member absent from `fixture`.
    static func sameWireForm(_ written: JSONValue, _ fixture: JSONValue) -> Bool {
        switch (written, fixture) {
        case (.object(let mine), .object(let theirs)):
            guard Set(theirs.keys).isSubset(of: mine.keys) else { return false }
            return mine.allSatisfy { key, value in theirs[key].map { sameWireForm(value, $0) } ?? (value == .null) }
        case (.array(let mine), .array(let theirs)):
            return mine.count == theirs.count && zip(mine, theirs).allSatisfy { sameWireForm($0, $1) }
        default:
            return written == fixture
        }
    }

    @Test func theWireFormCheckCatchesUpperCaseIdsAndRenamedMembers() {
        let fixture = try! JSONValue(json: #"{"userId":"0192f1a0-1111-7000-8000-000000000001","scope":"sessions"}"#)
        #expect(Self.sameWireForm(try! JSONValue(json: #"{"userId":"0192f1a0-1111-7000-8000-000000000001","scope":"sessions","kept":null}"#), fixture))
        #expect(!Self.sameWireForm(try! JSONValue(json: #"{"userId":"0192F1A0-1111-7000-8000-000000000001","scope":"sessions"}"#), fixture))
        #expect(!Self.sameWireForm(try! JSONValue(json: #"{"user":"0192f1a0-1111-7000-8000-000000000001","scope":"sessions"}"#), fixture))
        #expect(!Self.sameWireForm(try! JSONValue(json: #"{"userId":"0192f1a0-1111-7000-8000-000000000001","scope":"sessions","kept":1}"#), fixture))
    }
}

/// Decodes a payload as its contract's type and writes it again, the way the outbox would.
protocol Reencoding {
    func reencode(_ data: Data) throws -> [UInt8]
}

extension EventContract: Reencoding {
    func reencode(_ data: Data) throws -> [UInt8] {
        try JSONWriter.encode(try EventCoding.decoder.decode(Payload.self, from: data))
    }
}
