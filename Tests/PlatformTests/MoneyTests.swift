import Foundation
import Testing
@testable import Platform

@Suite struct MoneyTests {
    let gbp = Currency.gbp

    func money(_ amount: Int64, _ currency: Currency = .gbp) -> Money { Money(amount: amount, currency: currency) }

    // MARK: Currencies

    @Test(arguments: [("GBP", 2), ("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("VND", 0),
                      ("XOF", 0), ("XAF", 0), ("BHD", 3), ("KWD", 3), ("OMR", 3), ("JOD", 3), ("TND", 3), ("IQD", 3), ("LYD", 3),
                      ("CHF", 2), ("INR", 2), ("HUF", 2)])
    func exponentsFollowISO4217(code: String, exponent: Int) throws {
        let currency = try Currency(code: code)
        #expect(currency.code == code)
        #expect(currency.exponent == exponent)
    }

    @Test(arguments: ["gbp", "GB", "GBPX", "", "XXX", "XAU", "XTS", "ABC", "HRK", "G P", "ＧＢＰ"])
    func unknownCodesAreRefused(code: String) {
        #expect(throws: MoneyError.unknownCurrency(code)) { try Currency(code: code) }
    }

    @Test func theTableIsWholeAndCoherent() {
        let all = Currency.all
        #expect(all.count > 150)
        #expect(Set(all.map(\.code)).count == all.count)
        #expect(all.allSatisfy { $0.code.utf8.count == 3 && $0.code.utf8.allSatisfy { (0x41...0x5A).contains($0) } })
        #expect(all.allSatisfy { [0, 2, 3].contains($0.exponent) })
        #expect(Currency.gbp == (try? Currency(code: "GBP")) && Currency.jpy.exponent == 0)
    }

    @Test func unknownCurrencyMessageReadsAsAFieldError() {
        #expect(MoneyError.unknownCurrency("ZZZ").description == "must be an ISO 4217 currency code such as GBP")
    }

    // MARK: JSON

    @Test func encodesAsAmountAndCode() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(money(125_000))
        #expect(String(decoding: data, as: UTF8.self) == #"{"amount":125000,"currency":"GBP"}"#)
        let object = try #require(try JSONSerialization.jsonObject(with: try JSONEncoder().encode(money(-5, .jpy))) as? [String: Any])
        #expect(object["amount"] as? Int == -5 && object["currency"] as? String == "JPY" && object.count == 2)
    }

    @Test(arguments: [#"{"amount": 125000, "currency": "GBP"}"#, #"{"currency": "KWD", "amount": -1}"#,
                      #"{"amount": 9223372036854775807, "currency": "JPY"}"#])
    func decodesAndRoundTrips(json: String) throws {
        let decoded = try JSONDecoder().decode(Money.self, from: Data(json.utf8))
        let again = try JSONDecoder().decode(Money.self, from: try JSONEncoder().encode(decoded))
        #expect(again == decoded)
    }

    @Test(arguments: [#"{"amount": 12.5, "currency": "GBP"}"#, #"{"amount": "1250", "currency": "GBP"}"#,
                      #"{"amount": 1250, "currency": "gbp"}"#, #"{"amount": 1250, "currency": "ZZZ"}"#,
                      #"{"amount": 1250}"#, #"{"currency": "GBP"}"#, #"{"amount": null, "currency": "GBP"}"#,
                      #"{"amount": 1e30, "currency": "GBP"}"#, #"{"amount": 9223372036854775808, "currency": "GBP"}"#,
                      #"{"amount": true, "currency": "GBP"}"#, #"{"amount": 1, "currency": 826}"#, #"[1250, "GBP"]"#])
    func decodingRefusesAnythingButIntegerMinorUnitsAndAKnownCurrency(json: String) {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Money.self, from: Data(json.utf8)) }
    }

    @Test func currencyDecodesFromItsCode() throws {
        #expect(try JSONDecoder().decode([Currency].self, from: Data(#"["EUR","JPY"]"#.utf8)) == [.eur, .jpy])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Currency.self, from: Data(#""EURO""#.utf8)) }
    }

    // MARK: Arithmetic

    @Test func addsSubtractsMultipliesAndNegates() throws {
        #expect(try money(1_000).adding(money(250)) == money(1_250))
        #expect(try money(1_000).subtracting(money(1_250)) == money(-250))
        #expect(try money(333).multiplied(by: 3) == money(999))
        #expect(try money(333).multiplied(by: -2) == money(-666))
        #expect(try money(5).negated() == money(-5))
        #expect(money(0).isZero && !money(0).isNegative && !money(0).isPositive)
        #expect(money(-1).isNegative && money(1).isPositive)
        #expect(Money.zero(.jpy) == money(0, .jpy))
    }

    @Test func refusesToMixCurrencies() {
        #expect(throws: MoneyError.currencyMismatch(.gbp, .eur)) { try money(1).adding(money(1, .eur)) }
        #expect(throws: MoneyError.currencyMismatch(.gbp, .eur)) { try money(1).subtracting(money(1, .eur)) }
        #expect(throws: MoneyError.currencyMismatch(.gbp, .usd)) { try money(1).isLess(than: money(2, .usd)) }
        #expect(throws: MoneyError.currencyMismatch(.gbp, .usd)) { try money(1).compare(money(2, .usd)) }
        #expect(throws: MoneyError.currencyMismatch(.gbp, .eur)) { try Money.sum([money(1), money(1, .eur)], currency: .gbp) }
        #expect(MoneyError.currencyMismatch(.gbp, .eur).description == "must be in GBP")
    }

    @Test func refusesToOverflow() {
        #expect(throws: MoneyError.overflow) { try money(.max).adding(money(1)) }
        #expect(throws: MoneyError.overflow) { try money(.min).subtracting(money(1)) }
        #expect(throws: MoneyError.overflow) { try money(.max / 2 + 1).multiplied(by: 2) }
        #expect(throws: MoneyError.overflow) { try money(.min).negated() }
        #expect(throws: MoneyError.overflow) { try money(.min).multiplied(by: -1) }
        #expect(throws: MoneyError.overflow) { try Money.sum([money(.max), money(1), money(-1)], currency: .gbp) }
    }

    @Test func comparesWithinACurrency() throws {
        #expect(try money(1).isLess(than: money(2)))
        #expect(try !money(2).isLess(than: money(2)))
        #expect(try money(3).isGreater(than: money(-3)))
        #expect(try money(2).compare(money(2)) == .orderedSame)
    }

    @Test func sumsNameTheirCurrencyEvenWhenEmpty() throws {
        #expect(try Money.sum([], currency: .eur) == money(0, .eur))
        #expect(try Money.sum([money(1), money(2), money(-4)], currency: .gbp) == money(-1))
    }

    // MARK: Text

    @Test(arguments: [(Int64(125_000), "GBP", "1250.00 GBP"), (5, "EUR", "0.05 EUR"), (-5, "EUR", "-0.05 EUR"),
                      (-100, "USD", "-1.00 USD"), (0, "GBP", "0.00 GBP"), (1250, "JPY", "1250 JPY"), (-7, "JPY", "-7 JPY"),
                      (1, "KWD", "0.001 KWD"), (123_456, "KWD", "123.456 KWD"), (Int64.min, "GBP", "-92233720368547758.08 GBP")])
    func describesInMajorUnits(amount: Int64, code: String, text: String) throws {
        #expect(try Money(amount: amount, currencyCode: code).description == text)
    }

    // MARK: Allocation

    @Test func allocatesByLargestRemainderWithEarlierPartsFirstOnTies() throws {
        #expect(try money(100).allocate(ratios: [1, 1, 1]).map(\.amount) == [34, 33, 33])
        #expect(try money(5).allocate(ratios: [3, 7]).map(\.amount) == [2, 3])  // 1.5 and 3.5: tie, the earlier part first
        #expect(try money(-100).allocate(ratios: [1, 1, 1]).map(\.amount) == [-34, -33, -33])
        #expect(try money(1).allocate(ratios: [1, 1, 1]).map(\.amount) == [1, 0, 0])
        #expect(try money(10).allocate(ratios: [70, 20, 10]).map(\.amount) == [7, 2, 1])
        #expect(try money(0).allocate(ratios: [1, 2]).map(\.amount) == [0, 0])
        #expect(try money(7).allocate(ratios: [0, 1, 0, 1]).map(\.amount) == [0, 4, 0, 3])
        #expect(try money(1).allocate(ratios: [1, 0, 0]).map(\.amount) == [1, 0, 0])
        #expect(try money(1, .jpy).allocate(ratios: [5]).map(\.currency) == [.jpy])
    }

    @Test func allocatesTheExtremesWithoutOverflow() throws {
        let parts = try money(.min).allocate(ratios: [Int.max, Int.max, 1])
        #expect(parts.reduce(0 as Int128) { $0 + Int128($1.amount) } == Int128(Int64.min))
        let whole = try money(.max).allocate(ratios: [1, Int.max - 1])
        #expect(whole.reduce(0 as Int128) { $0 + Int128($1.amount) } == Int128(Int64.max))
        #expect(try money(.min).allocate(ratios: [1]).map(\.amount) == [.min])
    }

    @Test func refusesRatiosThatDescribeNoSplit() {
        #expect(throws: MoneyError.invalidRatios) { try money(10).allocate(ratios: []) }
        #expect(throws: MoneyError.invalidRatios) { try money(10).allocate(ratios: [0, 0]) }
        #expect(throws: MoneyError.invalidRatios) { try money(10).allocate(ratios: [2, -1]) }
        #expect(throws: MoneyError.invalidRatios) { try money(10).allocate(ratios: [Int.max, Int.max, Int.max]) }
    }

    @Test func allocationKeepsEveryMinorUnitAndStaysWithinOneOfTheExactShare() throws {
        var generator = SeededGenerator(seed: 0x5EED)
        for _ in 0..<5_000 {
            let amount = Int64.random(in: -1_000_000_000...1_000_000_000, using: &generator) >> Int64.random(in: 0...25, using: &generator)
            let ratios = (0..<Int.random(in: 1...12, using: &generator)).map { _ in
                Bool.random(using: &generator) ? Int.random(in: 0...5, using: &generator) : Int.random(in: 0...1_000_000, using: &generator)
            }
            guard ratios.contains(where: { $0 > 0 }) else { continue }
            let parts = try money(amount).allocate(ratios: ratios)
            #expect(parts.count == ratios.count)
            #expect(try Money.sum(parts, currency: .gbp).amount == amount)
            let total = Int128(ratios.reduce(0, +))
            for (part, ratio) in zip(parts, ratios) {
                // |part × total − amount × ratio| < total  ⇔  the part is within one minor unit of its exact share.
                let error = Int128(part.amount) * total - Int128(amount) * Int128(ratio)
                #expect(error.magnitude < total.magnitude, "amount \(amount) ratios \(ratios) parts \(parts.map(\.amount))")
                if ratio == 0 { #expect(part.amount == 0) }
                if amount != 0, part.amount != 0 { #expect((part.amount < 0) == (amount < 0)) }
            }
            let mirrored = try money(-amount).allocate(ratios: ratios)
            #expect(mirrored.map(\.amount) == parts.map { -$0.amount })
        }
    }

    // MARK: Commission split

    @Test func splitsOffBasisPointsRoundingHalfAwayFromZero() throws {
        #expect(try money(10_000).split(basisPoints: 1_250) == (money(1_250), money(8_750)))
        #expect(try money(999).split(basisPoints: 0) == (money(0), money(999)))
        #expect(try money(999).split(basisPoints: 10_000) == (money(999), money(0)))
        #expect(try money(5).split(basisPoints: 1_000) == (money(1), money(4)))  // 0.5 rounds up to the part
        #expect(try money(4).split(basisPoints: 1_000) == (money(0), money(4)))  // 0.4 rounds down
        #expect(try money(1_001).split(basisPoints: 500) == (money(50), money(951)))  // 50.05
        #expect(try money(-5).split(basisPoints: 1_000) == (money(-1), money(-4)))
        #expect(try money(-10_000).split(basisPoints: 1_250) == (money(-1_250), money(-8_750)))
        #expect(try money(.max).split(basisPoints: 10_000) == (money(.max), money(0)))
        #expect(try money(.min).split(basisPoints: 5_000) == (money(.min / 2), money(.min / 2)))
    }

    @Test func splitPartsAlwaysAddUpAndMirrorForNegatives() throws {
        var generator = SeededGenerator(seed: 42)
        for _ in 0..<5_000 {
            let amount = Int64.random(in: Int64.min / 2...Int64.max / 2, using: &generator) >> Int64.random(in: 0...60, using: &generator)
            let bps = Int.random(in: 0...10_000, using: &generator)
            let (part, rest) = try money(amount).split(basisPoints: bps)
            #expect(try part.adding(rest) == money(amount))
            let exact = Int128(amount) * Int128(bps)  // the part × 10 000
            #expect((Int128(part.amount) * 10_000 - exact).magnitude <= 5_000)
            let negative = try money(-amount).split(basisPoints: bps)
            #expect(negative.part.amount == -part.amount && negative.rest.amount == -rest.amount)
        }
    }

    @Test(arguments: [-1, 10_001, Int.min, Int.max])
    func refusesBasisPointsOutsideTheWhole(bps: Int) {
        #expect(throws: MoneyError.invalidBasisPoints(bps)) { try money(100).split(basisPoints: bps) }
    }
}

/// A deterministic generator (SplitMix64), so a failing property test fails the same way again.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
