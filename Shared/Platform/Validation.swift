import Foundation

/// Collects every invalid field of a request, then throws them together as one 422.
///
/// Each check returns the cleaned value, or nil (and records a `FieldError`) when it is
/// missing or invalid, so a handler checks everything first and throws once with `check()`:
///
///     var v = Validator()
///     let title = v.text(body.title, "title", length: 3...120)
///     let country = v.nested("shippingAddress") { $0.countryCode(body.shippingAddress?.country, "country") }
///     try v.check()
///
/// Field paths are dotted, JSON-pointer-like (`shippingAddress.postalCode`, `media.0.url`):
/// `nested` prefixes every field recorded inside it, `add` included.
public struct Validator: Sendable {
    public private(set) var errors: [FieldError] = []
    /// The path every field is recorded under, such as `shippingAddress`; empty at the top.
    public let prefix: String

    public init(prefix: String = "") {
        self.prefix = prefix
    }

    public var isValid: Bool { errors.isEmpty }

    /// Throws the 422 `validation-failed` problem carrying every recorded error, if there is one.
    public func check() throws {
        if !errors.isEmpty { throw Problem.validation(errors) }
    }

    /// The full path of `field` under this validator's prefix.
    public func path(_ field: String) -> String {
        prefix.isEmpty ? field : field.isEmpty ? prefix : prefix + "." + field
    }

    public mutating func add(_ error: FieldError) {
        errors.append(FieldError(path(error.field), error.message))
    }

    /// Records errors that already carry full paths, such as a JSON Schema's (they are not prefixed again).
    public mutating func add(contentsOf errors: [FieldError]) {
        self.errors.append(contentsOf: errors)
    }

    public mutating func add(_ field: String, _ message: String) {
        errors.append(FieldError(path(field), message))
    }

    /// Records `message` for `field` unless `condition` holds.
    public mutating func require(_ condition: Bool, _ field: String, _ message: String) {
        if !condition { add(field, message) }
    }

    /// Runs `body` with a validator whose fields are under `field` (`shippingAddress`, `media.0`), keeping its errors.
    public mutating func nested<Result>(_ field: String, _ body: (inout Validator) throws -> Result) rethrows -> Result {
        var inner = Validator(prefix: path(field))
        defer { errors.append(contentsOf: inner.errors) }
        return try body(&inner)
    }

    /// `nested` for an array element: `v.nested("media", 0) { … }` records `media.0.url`.
    public mutating func nested<Result>(_ field: String, _ index: Int, _ body: (inout Validator) throws -> Result) rethrows -> Result {
        try nested(field + "." + String(index), body)
    }

    /// Records "is required" when `value` is nil and `required`; returns `value` for the checks that follow.
    private mutating func present<Value>(_ value: Value?, _ field: String, _ required: Bool) -> Value? {
        if value == nil, required { add(field, "is required") }
        return value
    }

    // MARK: Text

    /// Trimmed text of `length` characters (grapheme clusters), free of control characters.
    ///
    /// Surrounding whitespace is removed first; text that is empty after that counts as absent
    /// (nil, and "is required" when `required`). `multiline` text may contain line feeds and
    /// tabs, and has CR LF line breaks (what browsers send for a textarea) turned into LF; any
    /// other control character, NUL included, is refused in every field.
    public mutating func text(_ value: String?, _ field: String, required: Bool = true, length: ClosedRange<Int>,
                              multiline: Bool = false) -> String? {
        guard let value else { return present(nil as String?, field, required) }
        var text = value.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return present(nil as String?, field, required) }
        if multiline, text.utf8.contains(13) { text = text.replacingOccurrences(of: "\r\n", with: "\n") }
        // The control characters (general category Cc) are exactly U+0000–U+001F and U+007F–U+009F.
        for scalar in text.unicodeScalars where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
            if multiline, scalar == "\n" || scalar == "\t" { continue }
            add(field, multiline ? "must not contain control characters other than line breaks and tabs" : "must not contain line breaks or control characters")
            return nil
        }
        let count = text.count
        if count < length.lowerBound {
            add(field, "must be at least \(length.lowerBound) \(length.lowerBound == 1 ? "character" : "characters")")
            return nil
        }
        if count > length.upperBound {
            add(field, "must be at most \(length.upperBound) \(length.upperBound == 1 ? "character" : "characters")")
            return nil
        }
        return text
    }

    // MARK: Choices and numbers

    /// One of an enum's raw values; the message lists them all.
    public mutating func oneOf<Choice: RawRepresentable & CaseIterable>(_ value: String?, _ field: String, as type: Choice.Type,
                                                                       required: Bool = true) -> Choice? where Choice.RawValue == String {
        guard let value = present(value, field, required) else { return nil }
        if let choice = Choice(rawValue: value) { return choice }
        add(field, "must be one of: " + Choice.allCases.map(\.rawValue).joined(separator: ", "))
        return nil
    }

    /// An integer within `range`, worded like the `limit` query parameter's error.
    public mutating func integer(_ value: Int?, _ field: String, required: Bool = true, range: ClosedRange<Int>) -> Int? {
        guard let value = present(value, field, required) else { return nil }
        guard range.contains(value) else {
            add(field, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return value
    }

    /// A latitude and longitude, recorded as `field.lat` and `field.lon`.
    public mutating func coordinates(lat: Double?, lon: Double?, field: String, required: Bool = true) -> (lat: Double, lon: Double)? {
        let latPath = field.isEmpty ? "lat" : field + ".lat", lonPath = field.isEmpty ? "lon" : field + ".lon"
        let lat = present(lat, latPath, required), lon = present(lon, lonPath, required)
        var valid = lat != nil && lon != nil
        if let lat, !(lat.isFinite && (-90...90).contains(lat)) { add(latPath, "must be a number from -90 to 90"); valid = false }
        if let lon, !(lon.isFinite && (-180...180).contains(lon)) { add(lonPath, "must be a number from -180 to 180"); valid = false }
        guard valid, let lat, let lon else { return nil }
        return (lat, lon)
    }

    // MARK: Identifiers and codes

    /// An absolute URL with one of `schemes` and a host, at most `maxLength` characters.
    public mutating func url(_ value: String?, _ field: String, required: Bool = true, schemes: Set<String> = ["https", "http"],
                             maxLength: Int = 2048) -> URL? {
        guard let value = present(value, field, required) else { return nil }
        guard value.utf8.count <= maxLength || value.count <= maxLength else {
            add(field, "must be at most \(maxLength) characters")
            return nil
        }
        // URL(string:) would accept spaces or a relative path; demand printable ASCII or non-ASCII, a known scheme and a host.
        guard !value.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }),
              let url = URL(string: value), let scheme = url.scheme?.lowercased(), schemes.contains(scheme),
              let host = url.host, !host.isEmpty else {
            add(field, "must be an absolute \(schemes.sorted().reversed().joined(separator: " or ")) URL")
            return nil
        }
        return url
    }

    /// An ISO 3166-1 alpha-2 country code, upper-case (`GB`).
    public mutating func countryCode(_ value: String?, _ field: String, required: Bool = true) -> String? {
        guard let value = present(value, field, required) else { return nil }
        guard CountryCodes.isAssigned(value) else {
            add(field, "must be an ISO 3166-1 alpha-2 country code in upper case, such as GB")
            return nil
        }
        return value
    }

    /// An ISO 4217 currency code (`GBP`).
    public mutating func currency(_ value: String?, _ field: String, required: Bool = true) -> Currency? {
        guard let value = present(value, field, required) else { return nil }
        do {
            return try Currency(code: value)
        } catch {
            add(field, error.description)
            return nil
        }
    }

    public mutating func uuid(_ value: String?, _ field: String, required: Bool = true) -> UUID? {
        guard let value = present(value, field, required) else { return nil }
        guard value.utf8.count == 36, let id = UUID(uuidString: value) else {
            add(field, "must be a UUID")
            return nil
        }
        return id
    }

    /// An RFC 3339 full-date (`2024-02-29`), checked against the calendar.
    public mutating func date(_ value: String?, _ field: String, required: Bool = true) -> CalendarDate? {
        guard let value = present(value, field, required) else { return nil }
        guard let date = CalendarDate(value) else {
            add(field, "must be a date (YYYY-MM-DD)")
            return nil
        }
        return date
    }

    /// An RFC 3339 date-time with an offset (`2026-03-01T12:00:00Z`, fractions allowed).
    public mutating func time(_ value: String?, _ field: String, required: Bool = true) -> Date? {
        guard let value = present(value, field, required) else { return nil }
        let whole = Date.ISO8601FormatStyle(includingFractionalSeconds: false)
        let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        guard let time = (try? whole.parse(value)) ?? (try? fractional.parse(value)) else {
            add(field, "must be an RFC 3339 date-time such as 2026-03-01T12:00:00Z")
            return nil
        }
        return time
    }

    // MARK: Money

    /// A decoded amount: not negative, or above zero when `positive`; in `currencies` when given.
    public mutating func money(_ value: Money?, _ field: String, required: Bool = true, positive: Bool = false,
                               currencies: Set<Currency>? = nil) -> Money? {
        guard let value = present(value, field, required) else { return nil }
        var valid = true
        if positive, value.amount <= 0 { add(path2(field, "amount"), "must be greater than zero"); valid = false }
        if !positive, value.amount < 0 { add(path2(field, "amount"), "must not be negative"); valid = false }
        if let currencies, !currencies.contains(value.currency) {
            add(path2(field, "currency"), "must be one of: " + currencies.map(\.code).sorted().joined(separator: ", "))
            valid = false
        }
        return valid ? value : nil
    }

    /// An amount whose parts arrived loosely typed (so a bad currency is reported with every other error,
    /// not as the one decoding error JSONBody stops at): errors go to `field.amount` and `field.currency`.
    public mutating func money(amount: Int64?, currency code: String?, _ field: String, required: Bool = true, positive: Bool = false,
                               currencies: Set<Currency>? = nil) -> Money? {
        if amount == nil, code == nil {
            if required { add(field, "is required") }
            return nil
        }
        let amount = present(amount, path2(field, "amount"), true)
        let currency = currency(code, path2(field, "currency"))
        guard let amount, let currency else { return nil }
        return money(Money(amount: amount, currency: currency), field, positive: positive, currencies: currencies)
    }

    private func path2(_ field: String, _ member: String) -> String { field.isEmpty ? member : field + "." + member }
}

/// A day of the Gregorian calendar, written as an RFC 3339 full-date (`2024-02-29`).
public struct CalendarDate: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    /// Nil unless the values name a real day in years 0000...9999 (so 2023-02-29 is nil).
    public init?(year: Int, month: Int, day: Int) {
        guard (0...9999).contains(year), (1...12).contains(month), day >= 1, day <= Self.days(in: month, of: year) else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses exactly `YYYY-MM-DD` (no time, no offset, no surrounding space).
    public init?(_ text: String) {
        var text = text
        guard let (year, month, day) = text.withUTF8(Self.parse) else { return nil }
        self.init(year: year, month: month, day: day)
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> (Int, Int, Int)? {
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                let digit = bytes[index] &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                value = value * 10 + Int(digit)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10) else { return nil }
        return (year, month, day)
    }

    public static func days(in month: Int, of year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    public var description: String {
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2)
    }

    public static func < (lhs: CalendarDate, rhs: CalendarDate) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard let date = CalendarDate(try container.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a date (YYYY-MM-DD)")
        }
        self = date
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// ISO 3166-1 alpha-2 codes officially assigned (249, as of 2025).
enum CountryCodes {
    static func isAssigned(_ code: String) -> Bool {
        code.utf8.count == 2 && assigned.contains(code)
    }

    private static let assigned: Set<String> = Set("""
        AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
        CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
        GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO \
        JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR \
        MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO \
        RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV \
        TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
        """.split(separator: " ").map(String.init))

    static var count: Int { assigned.count }
}

/// JSON merge patch (RFC 7396) over `JSONValue`, the body of every `PATCH`.
///
/// `apply` follows the RFC exactly, so a non-object patch replaces the whole target; an
/// endpoint that patches a resource must refuse such a body itself (a 422 on `body`) first.
public enum JSONMergePatch {
    public static func apply(_ patch: JSONValue, to target: JSONValue) -> JSONValue {
        guard case .object(let members) = patch else { return patch }
        var result: [String: JSONValue]
        if case .object(let existing) = target { result = existing } else { result = [:] }
        for (name, value) in members {
            if case .null = value {
                result.removeValue(forKey: name)
            } else {
                result[name] = apply(value, to: result[name] ?? .null)
            }
        }
        return .object(result)
    }

    /// The top-level members a patch mentions (set or removed), sorted; empty unless it is an object.
    public static func touchedMembers(_ patch: JSONValue) -> [String] {
        guard case .object(let members) = patch else { return [] }
        return members.keys.sorted()
    }

    /// The top-level members whose value applying `patch` to `target` actually changes, sorted:
    /// what decides whether an edit is material (a patch that restates a title changes nothing).
    public static func changedMembers(_ patch: JSONValue, target: JSONValue) -> [String] {
        let before: [String: JSONValue]
        if case .object(let members) = target { before = members } else { before = [:] }
        guard case .object(let after) = apply(patch, to: target) else { return [] }
        return touchedMembers(patch).filter { before[$0] != after[$0] }
    }
}
