import Foundation

/// Why a money operation was refused; `description` is worded as a 422 field message.
public enum MoneyError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownCurrency(String)
    case currencyMismatch(Currency, Currency)
    case overflow
    case invalidRatios
    case invalidBasisPoints(Int)

    public var description: String {
        switch self {
        case .unknownCurrency: "must be an ISO 4217 currency code such as GBP"
        case .currencyMismatch(let expected, _): "must be in \(expected.code)"
        case .overflow: "is too large"
        case .invalidRatios: "must be non-negative ratios with at least one above zero"
        case .invalidBasisPoints: "must be from 0 to 10000 basis points"
        }
    }
}

/// An ISO 4217 currency: its three-letter code and how many minor-unit digits it has.
public struct Currency: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Three upper-case ASCII letters, such as `GBP`.
    public let code: String
    /// Minor-unit digits: 2 for GBP (pence), 0 for JPY, 3 for KWD.
    public let exponent: Int

    public init(code: String) throws(MoneyError) {
        guard code.utf8.count == 3, let exponent = Self.exponents[code] else { throw .unknownCurrency(code) }
        self.code = code
        self.exponent = exponent
    }

    private init(known code: String, _ exponent: Int) {
        self.code = code
        self.exponent = exponent
    }

    public static let gbp = Currency(known: "GBP", 2)
    public static let eur = Currency(known: "EUR", 2)
    public static let usd = Currency(known: "USD", 2)
    public static let jpy = Currency(known: "JPY", 0)

    public var description: String { code }

    /// Every accepted code: ISO 4217 currencies in circulation, without fund codes (BOV, CLF, USN…),
    /// precious metals, SDR and test codes, which have no place in a price.
    public static var all: [Currency] { exponents.keys.sorted().map { Currency(known: $0, exponents[$0] ?? 2) } }

    // ISO 4217 (amendments to 2025). The minor unit is 2 digits unless listed otherwise.
    private static let exponents: [String: Int] = {
        let twoDigits = """
            AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD \
            CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD \
            GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD \
            MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP \
            PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS \
            TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG
            """
        let zeroDigits = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
        let threeDigits = "BHD IQD JOD KWD LYD OMR TND"
        var table: [String: Int] = [:]
        for (codes, exponent) in [(twoDigits, 2), (zeroDigits, 0), (threeDigits, 3)] {
            for code in codes.split(separator: " ") { table[String(code)] = exponent }
        }
        return table
    }()

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let code = try container.decode(String.self)
        do {
            try self.init(code: code)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(code)
    }
}

/// An amount of money in integer minor units of one currency; JSON `{"amount": 125000, "currency": "GBP"}`.
///
/// Arithmetic never mixes currencies and never wraps: both are refused with a `MoneyError`.
/// There is deliberately no `Comparable`: comparing pounds with yen has no answer, so the
/// comparisons throw instead.
public struct Money: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Minor units (pence for GBP, yen for JPY, fils for KWD).
    public var amount: Int64
    public var currency: Currency

    public init(amount: Int64, currency: Currency) {
        self.amount = amount
        self.currency = currency
    }

    public init(amount: Int64, currencyCode: String) throws(MoneyError) {
        self.init(amount: amount, currency: try Currency(code: currencyCode))
    }

    public static func zero(_ currency: Currency) -> Money { Money(amount: 0, currency: currency) }

    public var isZero: Bool { amount == 0 }
    public var isNegative: Bool { amount < 0 }
    public var isPositive: Bool { amount > 0 }

    // MARK: Arithmetic

    public func adding(_ other: Money) throws(MoneyError) -> Money {
        try sameCurrency(other)
        let (result, overflow) = amount.addingReportingOverflow(other.amount)
        if overflow { throw .overflow }
        return Money(amount: result, currency: currency)
    }

    public func subtracting(_ other: Money) throws(MoneyError) -> Money {
        try sameCurrency(other)
        let (result, overflow) = amount.subtractingReportingOverflow(other.amount)
        if overflow { throw .overflow }
        return Money(amount: result, currency: currency)
    }

    public func multiplied(by factor: Int) throws(MoneyError) -> Money {
        let (result, overflow) = amount.multipliedReportingOverflow(by: Int64(factor))
        if overflow { throw .overflow }
        return Money(amount: result, currency: currency)
    }

    /// The opposite amount (a refund of a charge); only `Int64.min` minor units has none.
    public func negated() throws(MoneyError) -> Money {
        let (result, overflow) = Int64(0).subtractingReportingOverflow(amount)
        if overflow { throw .overflow }
        return Money(amount: result, currency: currency)
    }

    /// The total of `values`, all in `currency` (which names the currency of an empty total).
    public static func sum(_ values: some Sequence<Money>, currency: Currency) throws(MoneyError) -> Money {
        var total = zero(currency)
        for value in values { total = try total.adding(value) }
        return total
    }

    // MARK: Comparison

    public func compare(_ other: Money) throws(MoneyError) -> ComparisonResult {
        try sameCurrency(other)
        return amount < other.amount ? .orderedAscending : amount > other.amount ? .orderedDescending : .orderedSame
    }

    public func isLess(than other: Money) throws(MoneyError) -> Bool { try compare(other) == .orderedAscending }
    public func isGreater(than other: Money) throws(MoneyError) -> Bool { try compare(other) == .orderedDescending }

    private func sameCurrency(_ other: Money) throws(MoneyError) {
        guard currency == other.currency else { throw .currencyMismatch(currency, other.currency) }
    }

    // MARK: Splitting

    /// Splits the amount in proportion to `ratios` without losing or creating a minor unit.
    ///
    /// Largest-remainder method: every part gets the floor of its exact share, then the units
    /// left over go one each to the parts with the largest remainders, earlier parts first on
    /// ties. So the parts always add up to the amount, each is within one minor unit of its
    /// exact share, and a zero ratio gets exactly zero. A negative amount is split as its
    /// magnitude and negated, so splitting a refund mirrors splitting the charge.
    /// Ratios must be non-negative with at least one above zero (`MoneyError.invalidRatios`).
    public func allocate(ratios: [Int]) throws(MoneyError) -> [Money] {
        var total: UInt64 = 0
        for ratio in ratios {
            guard ratio >= 0 else { throw .invalidRatios }
            let (sum, overflow) = total.addingReportingOverflow(UInt64(ratio))
            if overflow { throw .invalidRatios }
            total = sum
        }
        guard total > 0 else { throw .invalidRatios }

        let magnitude = amount.magnitude
        var shares = [UInt64](repeating: 0, count: ratios.count)
        var remainders = [UInt64](repeating: 0, count: ratios.count)
        var allocated: UInt64 = 0
        for (index, ratio) in ratios.enumerated() where ratio > 0 {
            // magnitude × ratio ÷ total in 128 bits: the quotient is at most `magnitude`, so it fits.
            let (quotient, remainder) = Self.multiplyDivide(magnitude, UInt64(ratio), total)
            shares[index] = quotient
            remainders[index] = remainder
            allocated += quotient
        }
        // Fewer units are left than parts with a non-zero remainder, so zero ratios never get one.
        let leftover = Int(magnitude - allocated)
        if leftover > 0 {
            let order = remainders.indices.sorted { remainders[$0] != remainders[$1] ? remainders[$0] > remainders[$1] : $0 < $1 }
            for index in order.prefix(leftover) { shares[index] += 1 }
        }
        let negative = amount < 0
        return shares.map { Money(amount: negative ? Self.negative($0) : Int64($0), currency: currency) }
    }

    /// Splits off `basisPoints`/10 000 of the amount (a commission) and the rest, which add up to the amount exactly.
    ///
    /// The part is rounded half away from zero (a half minor unit goes to the part), on the
    /// magnitude, so a negative amount splits as the mirror of its positive. `basisPoints` must
    /// be in 0...10 000 (`MoneyError.invalidBasisPoints`).
    public func split(basisPoints: Int) throws(MoneyError) -> (part: Money, rest: Money) {
        guard (0...10_000).contains(basisPoints) else { throw .invalidBasisPoints(basisPoints) }
        let (quotient, remainder) = Self.multiplyDivide(amount.magnitude, UInt64(basisPoints), 10_000)
        let partMagnitude = remainder >= 5_000 ? quotient + 1 : quotient
        let part = amount < 0 ? Self.negative(partMagnitude) : Int64(partMagnitude)
        // Same sign and |part| ≤ |amount|, so this cannot overflow.
        return (Money(amount: part, currency: currency), Money(amount: amount - part, currency: currency))
    }

    /// `a × b ÷ c` with a 128-bit intermediate; callers guarantee the quotient fits (`b ≤ c`).
    private static func multiplyDivide(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> (quotient: UInt64, remainder: UInt64) {
        let product = a.multipliedFullWidth(by: b)
        return c.dividingFullWidth((product.high, product.low))
    }

    /// The negative of a magnitude of at most 2⁶³ (which is `Int64.min`).
    private static func negative(_ magnitude: UInt64) -> Int64 { Int64(truncatingIfNeeded: 0 &- magnitude) }

    // MARK: Text and JSON

    /// `1250.00 GBP`, `-0.05 EUR`, `1250 JPY`: the amount in major units with the currency's digits.
    public var description: String {
        var digits = String(amount.magnitude)
        let exponent = currency.exponent
        if exponent > 0 {
            if digits.count <= exponent { digits = String(repeating: "0", count: exponent + 1 - digits.count) + digits }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -exponent))
        }
        return (amount < 0 ? "-" : "") + digits + " " + currency.code
    }

    enum CodingKeys: String, CodingKey { case amount, currency }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // Int64 decoding refuses fractions and strings, so 12.5 or "1250" never become money.
        amount = try container.decode(Int64.self, forKey: .amount)
        currency = try container.decode(Currency.self, forKey: .currency)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(amount, forKey: .amount)
        try container.encode(currency, forKey: .currency)
    }
}
