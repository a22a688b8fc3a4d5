import Foundation

/// A JSON Schema of the subset listing categories use, compiled once and checked against many values.
///
/// Supported: `type` (a name or an array of names), `enum`, `required`, `properties`,
/// `additionalProperties` (boolean or schema), `minLength`/`maxLength` (Unicode code points),
/// `minimum`/`maximum` (inclusive), `format: "date"` (RFC 3339 full-date, calendar-checked),
/// `items` (one schema), `uniqueItems`, and boolean schemas. `title`, `description`, `$schema`,
/// `default` and `examples` are annotations: accepted and ignored. Any other keyword (or another
/// `format`) is refused when the schema is compiled, so a category can never silently rely on a
/// check that is not made.
public struct JSONSchema: Sendable {
    /// Why a schema was refused: the JSON pointer of the schema object and what is wrong there.
    public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
        /// JSON pointer of the schema (or keyword) at fault, such as `#/properties/breed`.
        public var path: String
        /// The offending keyword, when there is one.
        public var keyword: String?
        public var message: String

        public var description: String { "\(message) at \(path)" }
    }

    /// What a search needs to know about one top-level property: how to read a query value for it and which values it takes.
    public struct PropertyInfo: Sendable, Equatable {
        public enum Kind: String, Sendable {
            case string, number, integer, boolean, date, object, array
            /// No single type (no `type`, a mixed `enum`, or several types): not searchable by value.
            case any
        }

        public var kind: Kind
        /// The `enum`, when the property has one.
        public var allowedValues: [JSONValue]?
        /// For an array, the kind of its items (`items`), else nil.
        public var elementKind: Kind?
        /// For an array, the `enum` of its items, when there is one.
        public var elementAllowedValues: [JSONValue]?
        public var isRequired: Bool

        /// Numbers and dates take `.min`/`.max` range filters; strings and booleans only equality.
        public var isOrdered: Bool { kind == .number || kind == .integer || kind == .date }

        /// The JSON value a query parameter's text stands for (`true` → `.bool(true)`), or nil when
        /// the text cannot be a value of this property. For an array it reads one element (the
        /// search means "contains").
        public func queryValue(_ text: String) -> JSONValue? {
            if kind == .array, let elementKind { return Self.read(text, elementKind, elementAllowedValues) }
            return Self.read(text, kind, allowedValues)
        }

        private static func read(_ text: String, _ kind: Kind, _ allowed: [JSONValue]?) -> JSONValue? {
            let value: JSONValue
            switch kind {
            case .string: value = .string(text)
            case .date:
                guard CalendarDate(text) != nil else { return nil }
                value = .string(text)
            case .integer:
                guard let integer = Int64(text) else { return nil }
                value = .number(Double(integer))
            case .number:
                // Decimal notation only: Double(_:) would also read "nan", "inf" and hex floats.
                guard text.utf8.allSatisfy({ (0x30...0x39).contains($0) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E || $0 == 0x45 || $0 == 0x65 }),
                      let number = Double(text), number.isFinite else { return nil }
                value = .number(number)
            case .boolean:
                guard text == "true" || text == "false" else { return nil }
                value = .bool(text == "true")
            case .object, .array, .any:
                return nil
            }
            if let allowed, !allowed.contains(value) { return nil }
            return value
        }
    }

    private let root: Node
    /// The top-level properties by name, with their kinds and enums.
    public let properties: [String: PropertyInfo]

    public init(_ schema: JSONValue) throws(SchemaError) {
        root = try Node(schema, pointer: "#")
        var properties: [String: PropertyInfo] = [:]
        for (name, node) in root.properties {
            let elementKind = node.items.map { $0.kind }
            properties[name] = PropertyInfo(
                kind: node.kind, allowedValues: node.enumValues, elementKind: node.kind == .array ? elementKind : nil,
                elementAllowedValues: node.kind == .array ? node.items?.enumValues : nil, isRequired: root.required.contains(name))
        }
        self.properties = properties
    }

    /// Every error in `value`, each naming its field under `path` (`attributes.breed`, `attributes.suitableFor.1`).
    ///
    /// Errors come in field-name order. A value of the wrong type, or outside its `enum`, gets
    /// that one error and no others, which would only repeat it.
    public func validate(_ value: JSONValue, at path: String = "") -> [FieldError] {
        var errors: [FieldError] = []
        root.validate(value, path, &errors)
        return errors
    }
}

/// JSON types as the `type` keyword names them.
private struct JSONTypes: OptionSet, Sendable {
    let rawValue: UInt8
    static let null = JSONTypes(rawValue: 1), boolean = JSONTypes(rawValue: 2), object = JSONTypes(rawValue: 4)
    static let array = JSONTypes(rawValue: 8), number = JSONTypes(rawValue: 16), string = JSONTypes(rawValue: 32)
    static let integer = JSONTypes(rawValue: 64)

    static let names: [(String, JSONTypes, String)] = [
        ("string", .string, "a string"), ("integer", .integer, "an integer"), ("number", .number, "a number"),
        ("boolean", .boolean, "a boolean"), ("object", .object, "an object"), ("array", .array, "an array"), ("null", .null, "null"),
    ]

    func matches(_ value: JSONValue) -> Bool {
        switch value {
        case .null: contains(.null)
        case .bool: contains(.boolean)
        case .string: contains(.string)
        case .array: contains(.array)
        case .object: contains(.object)
        case .number(let number): contains(.number) || (contains(.integer) && number.rounded(.towardZero) == number)
        }
    }
}

/// One compiled schema. A class because schemas nest; immutable once built, hence Sendable.
private final class Node: Sendable {
    static let annotations: Set<String> = ["title", "description", "$schema", "default", "examples"]

    let rejectsEverything: Bool
    let types: JSONTypes?
    let typeMessage: String
    let enumValues: [JSONValue]?
    let enumMessage: String
    let required: [String]
    let properties: [String: Node]
    /// Nil: any other member is allowed.
    let additionalProperties: Node?
    let minLength: Int?
    let maxLength: Int?
    let minimum: Double?
    let maximum: Double?
    let isDate: Bool
    let items: Node?
    let uniqueItems: Bool

    init(_ schema: JSONValue, pointer: String) throws(JSONSchema.SchemaError) {
        func refuse(_ keyword: String?, _ message: String) -> JSONSchema.SchemaError {
            JSONSchema.SchemaError(path: keyword.map { pointer + "/" + Node.escape($0) } ?? pointer, keyword: keyword, message: message)
        }
        func count(_ keyword: String, _ value: JSONValue) throws(JSONSchema.SchemaError) -> Int {
            guard case .number(let number) = value, number >= 0, number <= Double(Int32.max), number.rounded(.towardZero) == number else {
                throw refuse(keyword, "\(keyword) must be a non-negative integer")
            }
            return Int(number)
        }
        func number(_ keyword: String, _ value: JSONValue) throws(JSONSchema.SchemaError) -> Double {
            guard case .number(let number) = value else { throw refuse(keyword, "\(keyword) must be a number") }
            return number
        }

        var rejectsEverything = false
        var types: JSONTypes?, typeNames: [String] = []
        var enumValues: [JSONValue]?
        var required: [String] = []
        var properties: [String: Node] = [:]
        var additionalProperties: Node?
        var minLength: Int?, maxLength: Int?, minimum: Double?, maximum: Double?
        var isDate = false, uniqueItems = false
        var items: Node?

        switch schema {
        case .bool(let allowed):
            rejectsEverything = !allowed
        case .object(let keywords):
            for keyword in keywords.keys.sorted() {
                guard let value = keywords[keyword] else { continue }
                switch keyword {
                case _ where Node.annotations.contains(keyword):
                    continue
                case "type":
                    let names: [JSONValue]
                    switch value {
                    case .string: names = [value]
                    case .array(let list) where !list.isEmpty: names = list
                    default: throw refuse(keyword, "type must be a type name or a non-empty array of them")
                    }
                    var set = JSONTypes()
                    for name in names {
                        guard case .string(let name) = name, let known = JSONTypes.names.first(where: { $0.0 == name }) else {
                            throw refuse(keyword, "type names must be string, number, integer, boolean, object, array or null")
                        }
                        guard !set.contains(known.1) else { throw refuse(keyword, "type names must not repeat") }
                        set.insert(known.1)
                        typeNames.append(known.2)
                    }
                    types = set
                case "enum":
                    guard case .array(let list) = value, !list.isEmpty else { throw refuse(keyword, "enum must be a non-empty array") }
                    enumValues = list
                case "required":
                    guard case .array(let list) = value else { throw refuse(keyword, "required must be an array of names") }
                    for name in list {
                        guard case .string(let name) = name else { throw refuse(keyword, "required must be an array of names") }
                        if !required.contains(name) { required.append(name) }
                    }
                case "properties":
                    guard case .object(let members) = value else { throw refuse(keyword, "properties must be an object of schemas") }
                    for (name, member) in members {
                        properties[name] = try Node(member, pointer: pointer + "/properties/" + Node.escape(name))
                    }
                case "additionalProperties":
                    additionalProperties = try Node(value, pointer: pointer + "/additionalProperties")
                case "minLength": minLength = try count(keyword, value)
                case "maxLength": maxLength = try count(keyword, value)
                case "minimum": minimum = try number(keyword, value)
                case "maximum": maximum = try number(keyword, value)
                case "format":
                    guard value == .string("date") else { throw refuse(keyword, "format must be \"date\", the only format supported") }
                    isDate = true
                case "items":
                    if case .array = value { throw refuse(keyword, "items must be one schema (arrays of schemas are not supported)") }
                    items = try Node(value, pointer: pointer + "/items")
                case "uniqueItems":
                    guard case .bool(let unique) = value else { throw refuse(keyword, "uniqueItems must be a boolean") }
                    uniqueItems = unique
                default:
                    throw refuse(keyword, "unsupported keyword \"\(keyword)\"")
                }
            }
        default:
            throw refuse(nil, "a schema must be an object or a boolean")
        }

        self.rejectsEverything = rejectsEverything
        self.types = types
        self.typeMessage = "must be " + typeNames.joined(separator: " or ")
        self.enumValues = enumValues
        self.enumMessage = "must be one of: " + (enumValues ?? []).map(Node.display).joined(separator: ", ")
        self.required = required
        self.properties = properties
        self.additionalProperties = additionalProperties
        self.minLength = minLength
        self.maxLength = maxLength
        self.minimum = minimum
        self.maximum = maximum
        self.isDate = isDate
        self.items = items
        self.uniqueItems = uniqueItems
    }

    func validate(_ value: JSONValue, _ path: String, _ errors: inout [FieldError]) {
        if rejectsEverything { return errors.append(FieldError(path, "is not allowed")) }
        if let types, !types.matches(value) { return errors.append(FieldError(path, typeMessage)) }
        if let enumValues, !enumValues.contains(value) { return errors.append(FieldError(path, enumMessage)) }

        switch value {
        case .string(let text):
            if minLength != nil || maxLength != nil {
                let length = text.unicodeScalars.count
                if let minLength, length < minLength { errors.append(FieldError(path, "must be at least \(Node.characters(minLength))")) }
                if let maxLength, length > maxLength { errors.append(FieldError(path, "must be at most \(Node.characters(maxLength))")) }
            }
            if isDate, CalendarDate(text) == nil { errors.append(FieldError(path, "must be a date (YYYY-MM-DD)")) }
        case .number(let number):
            if let minimum, number < minimum { errors.append(FieldError(path, "must be at least \(Node.display(.number(minimum)))")) }
            if let maximum, number > maximum { errors.append(FieldError(path, "must be at most \(Node.display(.number(maximum)))")) }
        case .array(let elements):
            if let items {
                for (index, element) in elements.enumerated() { items.validate(element, Node.join(path, String(index)), &errors) }
            }
            if uniqueItems, elements.count > 1, Set(elements.map(HashableJSON.init)).count < elements.count {
                errors.append(FieldError(path, "must not contain duplicates"))
            }
        case .object(let members):
            guard !required.isEmpty || !properties.isEmpty || additionalProperties != nil else { return }
            // Every member present or required, in name order, so errors read in a stable order.
            var names = Set(members.keys)
            names.formUnion(required)
            for name in names.sorted() {
                let memberPath = Node.join(path, name)
                guard let member = members[name] else {
                    errors.append(FieldError(memberPath, "is required"))
                    continue
                }
                if let schema = properties[name] ?? additionalProperties { schema.validate(member, memberPath, &errors) }
            }
        case .bool, .null:
            break
        }
    }

    /// The kind a search reads this schema's values as.
    var kind: JSONSchema.PropertyInfo.Kind {
        if let types {
            var set = types
            set.remove(.null)
            if set.contains(.number) { set.remove(.integer) }
            switch set {
            case .string: return isDate ? .date : .string
            case .integer: return .integer
            case .number: return .number
            case .boolean: return .boolean
            case .object: return .object
            case .array: return .array
            default: return .any
            }
        }
        if let enumValues {
            if enumValues.allSatisfy({ if case .string = $0 { true } else { false } }) { return isDate ? .date : .string }
            if enumValues.allSatisfy({ if case .bool = $0 { true } else { false } }) { return .boolean }
            let numbers = enumValues.compactMap { if case .number(let number) = $0 { number } else { nil } }
            if numbers.count == enumValues.count { return numbers.allSatisfy { $0.rounded(.towardZero) == $0 } ? .integer : .number }
            return .any
        }
        return isDate ? .date : .any
    }

    static func join(_ path: String, _ name: String) -> String { path.isEmpty ? name : path + "." + name }

    static func characters(_ count: Int) -> String { count == 1 ? "1 character" : "\(count) characters" }

    /// RFC 6901 escaping of one pointer segment.
    static func escape(_ segment: String) -> String {
        segment.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }

    /// A value as a message shows it: strings bare, whole numbers without a fraction, the rest as JSON.
    static func display(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return text
        case .number(let number):
            if number.rounded(.towardZero) == number, abs(number) < 1e15 { return String(Int64(number)) }
            return String(number)
        case .bool(let flag): return String(flag)
        case .null: return "null"
        case .array, .object:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "?"
        }
    }
}

/// JSON equality made hashable for `uniqueItems`: 1 and 1.0 are one number (both are the
/// same Double already) and object member order does not matter (dictionaries).
private struct HashableJSON: Hashable {
    let value: JSONValue

    static func == (lhs: HashableJSON, rhs: HashableJSON) -> Bool { lhs.value == rhs.value }

    func hash(into hasher: inout Hasher) { Self.hash(value, into: &hasher) }

    private static func hash(_ value: JSONValue, into hasher: inout Hasher) {
        switch value {
        case .null: hasher.combine(0)
        case .bool(let flag): hasher.combine(1); hasher.combine(flag)
        case .number(let number): hasher.combine(2); hasher.combine(number)
        case .string(let text): hasher.combine(3); hasher.combine(text)
        case .array(let elements):
            hasher.combine(4)
            hasher.combine(elements.count)
            for element in elements { hash(element, into: &hasher) }
        case .object(let members):
            // Order-independent: sum each member's own hash, as Dictionary's Hashable does.
            var sum = 0
            for (name, member) in members {
                var inner = Hasher()
                inner.combine(name)
                hash(member, into: &inner)
                sum = sum &+ inner.finalize()
            }
            hasher.combine(5)
            hasher.combine(sum)
        }
    }
}
