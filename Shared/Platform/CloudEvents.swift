import Foundation
import Kafka

/// A domain event in CloudEvents 1.0 terms, carried on Kafka in binary content mode:
/// attributes as `ce_*` headers, the JSON payload as the message value.
public struct CloudEvent: Sendable, Equatable {
    public var id: String
    public var type: String
    public var source: String
    public var time: Date
    public var subject: String?
    public var dataContentType: String
    public var traceparent: String?
    public var data: [UInt8]

    public init(id: String = UUID.v7().uuidString.lowercased(), type: String, source: String, time: Date = Date(),
                subject: String? = nil, dataContentType: String = "application/json", traceparent: String? = nil, data: [UInt8]) {
        self.id = id
        self.type = type
        self.source = source
        self.time = time
        self.subject = subject
        self.dataContentType = dataContentType
        self.traceparent = traceparent
        self.data = data
    }

    /// Builds an event whose data is `payload` encoded as JSON.
    public static func json<Payload: Encodable>(type: String, source: String, subject: String?, payload: Payload,
                                                traceparent: String? = nil, time: Date = Date()) throws -> CloudEvent {
        CloudEvent(type: type, source: source, time: time, subject: subject, traceparent: traceparent,
                   data: try JSONWriter.encode(payload))
    }

    public func decode<Payload: Decodable>(_ type: Payload.Type) throws -> Payload {
        try EventCoding.decoder.decode(type, from: Data(data))
    }

    /// The binary-mode headers (CloudEvents Kafka protocol binding, `ce_` prefix).
    public var kafkaHeaders: [KafkaHeader] {
        var headers = [
            KafkaHeader(key: "ce_specversion", value: Array("1.0".utf8)),
            KafkaHeader(key: "ce_id", value: Array(id.utf8)),
            KafkaHeader(key: "ce_type", value: Array(type.utf8)),
            KafkaHeader(key: "ce_source", value: Array(source.utf8)),
            KafkaHeader(key: "ce_time", value: Array(EventCoding.formatTime(time).utf8)),
            KafkaHeader(key: "content-type", value: Array(dataContentType.utf8)),
        ]
        if let subject { headers.append(KafkaHeader(key: "ce_subject", value: Array(subject.utf8))) }
        if let traceparent { headers.append(KafkaHeader(key: "traceparent", value: Array(traceparent.utf8))) }
        return headers
    }

    public enum DecodingFailure: Error, Equatable, CustomStringConvertible {
        case missingAttribute(String)
        case unsupportedSpecVersion(String)
        case invalidTime(String)

        public var description: String {
            switch self {
            case .missingAttribute(let name): "CloudEvents attribute \(name) is missing"
            case .unsupportedSpecVersion(let version): "CloudEvents spec version \(version) is not supported"
            case .invalidTime(let value): "ce_time \(value) is not an RFC 3339 timestamp"
            }
        }
    }

    /// Reads an event from a Kafka message's headers and value.
    public init(headers: [KafkaHeader], value: [UInt8]) throws(DecodingFailure) {
        var attributes: [String: String] = [:]
        for header in headers {
            if let value = header.value { attributes[header.key] = String(decoding: value, as: UTF8.self) }
        }
        func required(_ name: String) throws(DecodingFailure) -> String {
            guard let value = attributes[name], !value.isEmpty else { throw .missingAttribute(name) }
            return value
        }
        let version = try required("ce_specversion")
        guard version == "1.0" else { throw .unsupportedSpecVersion(version) }
        let timeText = try required("ce_time")
        guard let time = EventCoding.parseTime(timeText) else { throw .invalidTime(timeText) }
        self.init(
            id: try required("ce_id"), type: try required("ce_type"), source: try required("ce_source"),
            time: time, subject: attributes["ce_subject"],
            dataContentType: attributes["content-type"] ?? "application/json",
            traceparent: attributes["traceparent"], data: value)
    }
}

/// JSON conventions for event payloads: camelCase keys, RFC 3339 UTC times. Payloads are
/// written by `JSONWriter`, the same encoding as HTTP bodies.
public enum EventCoding {
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseTime(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an RFC 3339 time")
            }
            return date
        }
        return decoder
    }

    public static func formatTime(_ date: Date) -> String {
        FastTime.rfc3339(date)
    }

    public static func parseTime(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted)) {
            return date
        }
        return try? Date(text, strategy: .iso8601)
    }
}
