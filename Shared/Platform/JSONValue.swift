import Foundation
import Hummingbird

/// Arbitrary JSON kept as JSON (for example a stored JSON Schema), encodable as-is.
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(json: String) throws {
        try self.init(data: Data(json.utf8))
    }

    public init(data: Data) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: data)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value.rounded() == value, abs(value) < 1e15 { try container.encode(Int64(value)) } else { try container.encode(value) }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// JSON responses in the suite's one encoding (`JSONWriter`: explicit nulls, lower-case UUIDs, RFC 3339 times).
public enum JSONResponse {
    public static func make<Value: Encodable>(_ value: Value, status: HTTPResponse.Status = .ok, cacheControl: String? = nil, headers: HTTPFields = [:]) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        if let cacheControl { fields[.cacheControl] = cacheControl }
        return Response(status: status, headers: fields, body: .init(byteBuffer: try JSONWriter.encodeToBuffer(value)))
    }
}

/// Hummingbird's encoder for values a handler returns (`ResponseEncodable`): the suite's encoding.
public struct SuiteResponseEncoder: ResponseEncoder {
    public init() {}

    public func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        try JSONResponse.make(value)
    }
}
