import Foundation
import Logging
import Testing
@testable import Platform

@Suite struct ValuesTests {
    @Test func uuidV7IsVersionedAndTimeOrdered() {
        let early = UUID.v7(now: Date(timeIntervalSince1970: 1_000))
        let late = UUID.v7(now: Date(timeIntervalSince1970: 2_000))
        let text = early.uuidString.lowercased()
        #expect(Array(text)[14] == "7")
        #expect(["8", "9", "a", "b"].contains(Array(text)[19]))
        #expect(early.uuidString < late.uuidString)
    }

    @Test func traceparentIsParsedAndInvalidOnesRejected() {
        let trace = TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(trace?.traceId == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(TraceParent("00-00000000000000000000000000000000-00f067aa0ba902b7-01") == nil)
        #expect(TraceParent("garbage") == nil)
        let child = trace!.child()
        #expect(child.traceId == trace!.traceId && child.parentId != trace!.parentId)
    }

    @Test func requestIdsFromOutsideAreSanitised() {
        #expect(RequestIds.sanitized("abc-123_x.y") == "abc-123_x.y")
        #expect(RequestIds.sanitized("bad\nid") == nil)
        #expect(RequestIds.sanitized(String(repeating: "a", count: 200)) == nil)
        #expect(RequestIds.make().count == 32)
    }

    @Test func idsStayDistinctAcrossThreadsAndReserveRefills() async {
        // 4 tasks × 1,500 ids of 16 bytes each: every thread's 4 KiB reserve refills several times.
        let batches = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask { (0..<1_500).map { _ in RequestIds.make() } }
            }
            return await group.reduce(into: [[String]]()) { $0.append($1) }
        }
        let ids = batches.flatMap { $0 }
        #expect(ids.count == 6_000)
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.utf8.count == 32 && $0.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) } })
        // Not stuck on a constant: the first hex digit takes many values.
        #expect(Set(ids.map { $0.first! }).count > 8)
    }

    struct Sample: Encodable { var id: UUID; var other: UUID? }

    @Test func uuidsAreWrittenLowerCase() throws {
        let id = UUID(uuidString: "0192F1A0-0000-7000-8000-0000000000A1")!
        #expect(try JSONWriter.string(Sample(id: id, other: id)) == #"{"id":"0192f1a0-0000-7000-8000-0000000000a1","other":"0192f1a0-0000-7000-8000-0000000000a1"}"#)
    }

    @Test func pagesAlwaysCarryNextCursor() throws {
        #expect(try JSONWriter.string(Page<Int>(items: [1], nextCursor: nil)) == #"{"items":[1],"nextCursor":null}"#)
    }

    @Test func logLinesAreSingleLineJSON() throws {
        let line = LineLogHandler.format(level: .info, message: "hello\nworld", metadata: ["request.id": "r1"], label: "l", service: "orders", json: true, date: Date(timeIntervalSince1970: 0))
        #expect(!line.contains("\n"))
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(object?["request.id"] as? String == "r1")
        #expect(object?["service"] as? String == "orders")
        #expect(object?["time"] as? String == "1970-01-01T00:00:00.000Z")
    }

    @Test func logValuesAreEscapedOnlyWhenTheyNeedIt() throws {
        let tricky = "quote \" back \\ tab \t bell \u{07} émoji 🐕"
        let line = LineLogHandler.format(level: .warning, message: "plain", metadata: ["tricky": .string(tricky), "plain": "just text"],
                                         label: "l", service: "gateway", json: true, date: Date(timeIntervalSince1970: 0))
        #expect(line.contains(#""plain":"just text""#))
        #expect(line.contains(#"\u0007"#))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["tricky"] as? String == tricky)
        #expect(object["message"] as? String == "plain")
    }

    @Test(arguments: [true, false])
    func fixedFieldLinesMatchLoggerLines(json: Bool) {
        let date = Date(timeIntervalSince1970: 1_700_000_000.25)
        let fields: KeyValuePairs<String, String> = ["client.address": "10.0.0.1", "http.route": "/v1/plans", "user.id": "a \"quoted\"\nname"]
        let fixed = FixedFieldLog(label: "gateway", service: "gateway", json: json, enabled: true).line("request", fields, date: date)
        let metadata = Logger.Metadata(uniqueKeysWithValues: fields.map { ($0.key, .string($0.value)) })
        let expected = LineLogHandler.format(level: .info, message: "request", metadata: metadata, label: "gateway", service: "gateway", json: json, date: date)
        #expect(fixed == expected)
        #expect(!fixed.contains("\n"))
    }
}
