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

    /// Every published payload version keeps decoding: fixtures are never edited, only added,
    /// and every fixture in the folder has a decoder here.
    @Test func fixturesOfEveryEventVersionDecode() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../Fixtures/events").standardized
        func load<Payload: Decodable>(_ name: String, as type: Payload.Type) throws -> Payload {
            try EventCoding.decoder.decode(type, from: Data(contentsOf: folder.appendingPathComponent(name)))
        }
        let user = UUID(uuidString: "0192f1a0-1111-7000-8000-000000000001")!
        let checks: [String: () throws -> Void] = [
            "identity.user.registered.v1.json": {
                let payload = try load("identity.user.registered.v1.json", as: UserRegisteredV1.self)
                #expect(payload.roles == ["vendor"] && payload.displayName == "Kennel Aurora")
            },
            "identity.user.role_changed.v1.json": {
                let payload = try load("identity.user.role_changed.v1.json", as: UserRoleChangedV1.self)
                #expect(payload.roles == ["buyer", "moderator"])
            },
            "identity.user.suspended.v1.json": {
                let payload = try load("identity.user.suspended.v1.json", as: UserStatusChangedV1.self)
                #expect(payload.status == "suspended")
            },
            "identity.user.reinstated.v1.json": {
                let payload = try load("identity.user.reinstated.v1.json", as: UserStatusChangedV1.self)
                #expect(payload.status == "active")
            },
            "identity.user.sessions_revoked.v1.json": {
                let payload = try load("identity.user.sessions_revoked.v1.json", as: SessionsRevokedV1.self)
                #expect(payload.scope == nil && payload.keptSessionId != nil && payload.sessionIds.count == 1)
            },
            "identity.user.sessions_revoked.v1.session-scope.json": {
                let payload = try load("identity.user.sessions_revoked.v1.session-scope.json", as: SessionsRevokedV1.self)
                #expect(payload.scope == .sessions)
            },
            "identity.notification.requested.v1.json": {
                let payload = try load("identity.notification.requested.v1.json", as: NotificationRequestedV1.self)
                #expect(payload.template == "email-verification" && payload.data["token"] != nil)
            },
            "identity.user.export_requested.v1.json": {
                let payload = try load("identity.user.export_requested.v1.json", as: UserExportRequestedV1.self)
                #expect(payload.userId == user)
            },
            "identity.user.erasure_requested.v1.json": {
                let payload = try load("identity.user.erasure_requested.v1.json", as: UserErasureV1.self)
                #expect(payload.userId == user)
            },
            "identity.user.erased.v1.json": {
                let payload = try load("identity.user.erased.v1.json", as: UserErasureV1.self)
                #expect(payload.userId == user)
            },
            "orders.user.export_part.v1.json": {
                let part = try load("orders.user.export_part.v1.json", as: UserExportPartV1.self)
                let data = try JSONValue(json: part.data)
                #expect(part.service == "orders" && data != .null)
            },
            "listings.user.erasure_completed.v1.json": {
                let payload = try load("listings.user.erasure_completed.v1.json", as: UserErasureCompletedV1.self)
                #expect(payload.service == "listings")
            },
        ]
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        #expect(Set(files) == Set(checks.keys), "a fixture without a decoder here, or a decoder without its fixture")
        for (_, check) in checks { try check() }
    }
}
