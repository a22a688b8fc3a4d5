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

    /// Every published payload version keeps decoding: fixtures are never edited, only added.
    @Test func fixturesOfEveryEventVersionDecode() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/events").standardized
        let data = try Data(contentsOf: fixtures.appendingPathComponent("identity.user.registered.v1.json"))
        let payload = try EventCoding.decoder.decode(UserRegisteredV1.self, from: data)
        #expect(payload.roles == ["vendor"])
        #expect(payload.displayName == "Kennel Aurora")
    }
}
