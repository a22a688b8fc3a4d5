import Foundation
import NIOCore

/// The suite's one JSON encoding, for HTTP bodies and event payloads alike:
///
/// - an absent optional is written as an explicit `null` (never omitted), so a client sees every
///   field of a resource whether or not it has a value;
/// - UUIDs are lower-case (RFC 9562 §4), dates RFC 3339 UTC with milliseconds, URLs their
///   absolute string, `Data` base64;
/// - object keys are sorted and `/` is not escaped, so equal values encode to equal bytes.
///
/// Synthesised `Encodable` conformances call `encodeIfPresent` for optionals; this encoder's
/// containers answer that with `null`, which is what makes the rule hold without hand-written
/// `encode(to:)` methods.
public enum JSONWriter {
    public static func encode<Value: Encodable>(_ value: Value) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        try node(for: value).write(to: &output)
        return output
    }

    public static func encodeToBuffer<Value: Encodable>(_ value: Value) throws -> ByteBuffer {
        ByteBuffer(bytes: try encode(value))
    }

    public static func string<Value: Encodable>(_ value: Value) throws -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }

    static func node<Value: Encodable>(for value: Value) throws -> JSONNode {
        if let special = try specialNode(value, codingPath: []) { return special }
        let encoder = NodeEncoder(codingPath: [])
        try value.encode(to: encoder)
        return encoder.storage.node
    }

    /// Types whose own `Encodable` form is not the suite's wire form.
    static func specialNode(_ value: some Encodable, codingPath: [any CodingKey]) throws -> JSONNode? {
        switch value {
        case let uuid as UUID: return .string(uuid.uuidString.lowercased())
        case let date as Date: return .string(FastTime.rfc3339(date))
        case let url as URL: return .string(url.absoluteString)
        case let data as Data: return .string(data.base64EncodedString())
        case let decimal as Decimal: return .number(decimal.description)
        case let double as Double: return try number(double, codingPath)
        case let float as Float: return try number(Double(float), codingPath)
        case let encoded as EncodedJSON: return .encoded(encoded.bytes)
        default: return nil
        }
    }

    static func number(_ value: Double, _ codingPath: [any CodingKey]) throws -> JSONNode {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "JSON has no NaN or infinity"))
        }
        if value.rounded() == value, abs(value) < 1e15 { return .number(String(Int64(value))) }
        return .number(String(value))
    }
}

/// An encoded JSON value. Objects keep insertion order until written (then sorted).
indirect enum JSONNode {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONNode])
    case object([(String, JSONNode)])
    /// Bytes this writer produced earlier (`EncodedJSON`).
    case encoded([UInt8])

    func write(to output: inout [UInt8]) throws {
        switch self {
        case .null: output.append(contentsOf: "null".utf8)
        case .bool(let value): output.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let text): output.append(contentsOf: text.utf8)
        case .string(let text): Self.writeString(text, to: &output)
        case .encoded(let bytes): output.append(contentsOf: bytes)
        case .array(let items):
            output.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                try item.write(to: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let members):
            output.append(UInt8(ascii: "{"))
            // Keys compare by UTF-8 bytes; of one key written twice, the later wins (as in a dictionary).
            let order = members.indices.sorted { a, b in
                let (x, y) = (members[a].0, members[b].0)
                return x == y ? a < b : x.utf8.lexicographicallyPrecedes(y.utf8)
            }
            var first = true
            for (position, index) in order.enumerated() {
                if position + 1 < order.count, members[order[position + 1]].0 == members[index].0 { continue }
                if !first { output.append(UInt8(ascii: ",")) }
                first = false
                Self.writeString(members[index].0, to: &output)
                output.append(UInt8(ascii: ":"))
                try members[index].1.write(to: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    static func writeString(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x00..<0x20:
                output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                           hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}

/// Where a container's value lives while it is being filled: containers share it by reference,
/// as nested containers and super-encoders must write into their parent.
final class NodeBox {
    enum Content {
        case empty
        case single(JSONNode)
        case array([NodeBox])
        case object([(String, NodeBox)])
    }

    var content: Content = .empty

    var node: JSONNode {
        switch content {
        case .empty: .object([])
        case .single(let node): node
        case .array(let boxes): .array(boxes.map(\.node))
        case .object(let members): .object(members.map { ($0.0, $0.1.node) })
        }
    }

    func makeObject() {
        if case .object = content { return }
        content = .object([])
    }

    func makeArray() {
        if case .array = content { return }
        content = .array([])
    }

    func append(key: String, _ box: NodeBox) {
        if case .object(var members) = content {
            content = .empty
            members.append((key, box))
            content = .object(members)
        }
    }

    func append(_ box: NodeBox) {
        if case .array(var items) = content {
            content = .empty
            items.append(box)
            content = .array(items)
        }
    }

    var count: Int {
        if case .array(let items) = content { return items.count }
        return 0
    }

    static func value(_ node: JSONNode) -> NodeBox {
        let box = NodeBox()
        box.content = .single(node)
        return box
    }
}

final class NodeEncoder: Encoder {
    let storage: NodeBox
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(codingPath: [any CodingKey], storage: NodeBox = NodeBox()) {
        self.codingPath = codingPath
        self.storage = storage
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        storage.makeObject()
        return KeyedEncodingContainer(KeyedNodeContainer<Key>(box: storage, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        storage.makeArray()
        return UnkeyedNodeContainer(box: storage, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleNodeContainer(box: storage, codingPath: codingPath)
    }

    /// The node for one value at `path`: special types first, then the value's own encoding.
    static func encode<Value: Encodable>(_ value: Value, at path: [any CodingKey]) throws -> NodeBox {
        if let special = try JSONWriter.specialNode(value, codingPath: path) { return .value(special) }
        let encoder = NodeEncoder(codingPath: path)
        try value.encode(to: encoder)
        return encoder.storage
    }
}

struct IndexKey: CodingKey {
    var stringValue: String { "\(index)" }
    var intValue: Int? { index }
    let index: Int
    init(_ index: Int) { self.index = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.index = intValue }
}

struct KeyedNodeContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: NodeBox
    let codingPath: [any CodingKey]

    private func put(_ node: JSONNode, _ key: Key) { box.append(key: key.stringValue, .value(node)) }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(try JSONWriter.number(value, codingPath + [key]), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(try JSONWriter.number(Double(value), codingPath + [key]), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(.number(String(value)), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        box.append(key: key.stringValue, try NodeEncoder.encode(value, at: codingPath + [key]))
    }

    // The suite's rule: an absent optional is an explicit null.
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { if let value { try encode(value, forKey: key) } else { put(.null, key) } }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { put(.null, key) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = NodeBox()
        nested.makeObject()
        box.append(key: key.stringValue, nested)
        return KeyedEncodingContainer(KeyedNodeContainer<NestedKey>(box: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = NodeBox()
        nested.makeArray()
        box.append(key: key.stringValue, nested)
        return UnkeyedNodeContainer(box: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { superEncoder(named: "super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }

    private func superEncoder(named name: String) -> any Encoder {
        let nested = NodeBox()
        box.append(key: name, nested)
        return NodeEncoder(codingPath: codingPath, storage: nested)
    }
}

struct UnkeyedNodeContainer: UnkeyedEncodingContainer {
    let box: NodeBox
    let codingPath: [any CodingKey]
    var count: Int { box.count }

    private func put(_ node: JSONNode) { box.append(.value(node)) }
    private var nextPath: [any CodingKey] { codingPath + [IndexKey(count)] }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(try JSONWriter.number(value, nextPath)) }
    mutating func encode(_ value: Float) throws { put(try JSONWriter.number(Double(value), nextPath)) }
    mutating func encode(_ value: Int) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { put(.number(String(value))) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        box.append(try NodeEncoder.encode(value, at: nextPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = nextPath
        let nested = NodeBox()
        nested.makeObject()
        box.append(nested)
        return KeyedEncodingContainer(KeyedNodeContainer<NestedKey>(box: nested, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = nextPath
        let nested = NodeBox()
        nested.makeArray()
        box.append(nested)
        return UnkeyedNodeContainer(box: nested, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let path = nextPath
        let nested = NodeBox()
        box.append(nested)
        return NodeEncoder(codingPath: path, storage: nested)
    }
}

struct SingleNodeContainer: SingleValueEncodingContainer {
    let box: NodeBox
    let codingPath: [any CodingKey]

    private func put(_ node: JSONNode) { box.content = .single(node) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ value: Bool) throws { put(.bool(value)) }
    mutating func encode(_ value: String) throws { put(.string(value)) }
    mutating func encode(_ value: Double) throws { put(try JSONWriter.number(value, codingPath)) }
    mutating func encode(_ value: Float) throws { put(try JSONWriter.number(Double(value), codingPath)) }
    mutating func encode(_ value: Int) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { put(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { put(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { put(.number(String(value))) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let encoded = try NodeEncoder.encode(value, at: codingPath)
        box.content = encoded.content
    }
}

/// A value kept in its encoded form, for answers assembled from parts that rarely change (a
/// read model's listings): `JSONWriter` writes the bytes as they are instead of encoding again.
public struct EncodedJSON: Encodable, Sendable, Equatable {
    public let bytes: [UInt8]

    public init(encoding value: some Encodable) throws {
        bytes = try JSONWriter.encode(value)
    }

    /// Other encoders get the value back, decoded.
    public func encode(to encoder: any Encoder) throws {
        try JSONValue(json: String(decoding: bytes, as: UTF8.self)).encode(to: encoder)
    }
}

/// JSON written straight into bytes under `JSONWriter`'s rules (explicit nulls, lower-case UUIDs,
/// RFC 3339 dates with milliseconds, the same number forms), for hot answers where going through
/// `Encodable` costs more than the work behind them. The caller writes keys itself, in `JSONWriter`'s
/// (byte) order; each use has a test holding its bytes equal to `JSONWriter.encode` of the same value.
public struct JSONStream {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 1024) {
        bytes.reserveCapacity(capacity)
    }

    /// Punctuation and keys, as written: `{"id":`.
    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    public mutating func string(_ text: String) {
        JSONNode.writeString(text, to: &bytes)
    }

    public mutating func string(_ uuid: UUID) {
        let hex = JSONNode.hexDigits
        bytes.append(UInt8(ascii: "\""))
        withUnsafeBytes(of: uuid.uuid) { raw in
            for (index, byte) in raw.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { bytes.append(UInt8(ascii: "-")) }
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func date(_ date: Date) {
        string(FastTime.rfc3339(date))
    }

    public mutating func int(_ value: Int64) {
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func double(_ value: Double) throws {
        try JSONWriter.number(value, []).write(to: &bytes)
    }

    public mutating func null() {
        raw("null")
    }

    public mutating func encoded(_ json: EncodedJSON) {
        bytes.append(contentsOf: json.bytes)
    }

    /// Any other value, through `JSONWriter`.
    public mutating func value(_ value: some Encodable) throws {
        try JSONWriter.node(for: value).write(to: &bytes)
    }
}
