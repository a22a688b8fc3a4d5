import Foundation
import Testing
@testable import Platform

@Suite struct ValidationTests {
    enum Outcome: String, CaseIterable { case release, refund }

    // MARK: Collecting errors

    @Test func collectsEveryErrorThenThrowsOne422() {
        var v = Validator()
        _ = v.text(nil, "title", length: 3...120)
        _ = v.integer(0, "quantity", range: 1...999)
        _ = v.oneOf("maybe", "outcome", as: Outcome.self)
        _ = v.text("fine", "note", length: 1...10)
        #expect(v.errors == [FieldError("title", "is required"), FieldError("quantity", "must be an integer from 1 to 999"),
                             FieldError("outcome", "must be one of: release, refund")])
        #expect(!v.isValid)
        #expect(throws: Problem.validation(v.errors)) { try v.check() }
    }

    @Test func aCleanValidatorDoesNotThrow() throws {
        var v = Validator()
        #expect(v.text("  Labrador puppy  ", "title", length: 3...120) == "Labrador puppy")
        #expect(v.oneOf("refund", "outcome", as: Outcome.self) == .refund)
        #expect(v.oneOf(nil, "outcome", as: Outcome.self, required: false) == nil)
        try v.check()
        #expect(v.isValid)
    }

    @Test func nestingPrefixesFieldPaths() {
        var v = Validator()
        let postalCode = v.nested("shippingAddress") { address in
            _ = address.countryCode("gb", "country")
            address.require(false, "line1", "must not be a PO box")
            address.add(FieldError("city", "is required"))
            return address.text("SW1A 1AA", "postalCode", length: 2...16)
        }
        let urls = ["https://example.com/a.jpg", "ftp://example.com/b.jpg"]
        for (index, url) in urls.enumerated() {
            v.nested("media", index) { _ = $0.url(url, "url") }
        }
        v.nested("a") { a in a.nested("b") { $0.add("c", "is odd") } }
        #expect(postalCode == "SW1A 1AA")
        #expect(v.errors.map(\.field) == ["shippingAddress.country", "shippingAddress.line1", "shippingAddress.city", "media.1.url", "a.b.c"])
    }

    @Test func schemaErrorsKeepTheirOwnPaths() {
        var v = Validator(prefix: "listing")
        v.add(contentsOf: [FieldError("attributes.breed", "is required")])
        v.add("title", "is required")
        #expect(v.errors == [FieldError("attributes.breed", "is required"), FieldError("listing.title", "is required")])
        #expect(v.path("") == "listing")
    }

    // MARK: Text

    @Test func textIsTrimmedAndCountedInCharacters() {
        var v = Validator()
        #expect(v.text("\n  hi  \t", "a", length: 1...2) == "hi")
        #expect(v.text("🐕‍🦺🐈", "b", length: 1...2) == "🐕‍🦺🐈")  // two characters, five scalars
        #expect(v.text("e\u{301}", "c", length: 1...1) == "e\u{301}")
        #expect(v.text("abc", "d", length: 1...2) == nil)
        #expect(v.text("a", "e", length: 2...5) == nil)
        #expect(v.text("abc", "f", length: 1...1) == nil)
        #expect(v.errors == [FieldError("d", "must be at most 2 characters"), FieldError("e", "must be at least 2 characters"),
                             FieldError("f", "must be at most 1 character")])
    }

    @Test func blankTextCountsAsAbsent() {
        var v = Validator()
        #expect(v.text("   ", "title", length: 1...10) == nil)
        #expect(v.text("", "region", required: false, length: 1...10) == nil)
        #expect(v.text(nil, "region", required: false, length: 1...10) == nil)
        #expect(v.errors == [FieldError("title", "is required")])
    }

    @Test(arguments: ["a\nb", "a\tb", "a\u{0}b", "a\rb", "a\u{7F}b", "a\u{1B}[31mb", "a\u{85}b"])
    func singleLineTextRefusesControlCharacters(text: String) {
        var v = Validator()
        #expect(v.text(text, "title", length: 1...100) == nil)
        #expect(v.errors == [FieldError("title", "must not contain line breaks or control characters")])
    }

    @Test func multilineTextKeepsLineBreaksAndTabsOnly() {
        var v = Validator()
        #expect(v.text("Line one\r\n\tLine two\n", "description", length: 1...100, multiline: true) == "Line one\n\tLine two")
        #expect(v.text("bell\u{7}", "other", length: 1...100, multiline: true) == nil)
        #expect(v.text("nul\u{0}x", "third", length: 1...100, multiline: true) == nil)
        #expect(v.text("lone\rreturn", "fourth", length: 1...100, multiline: true) == nil)
        #expect(v.errors.map(\.field) == ["other", "third", "fourth"])
        #expect(v.errors.allSatisfy { $0.message == "must not contain control characters other than line breaks and tabs" })
    }

    // MARK: Numbers, coordinates

    @Test func integersWithinRange() {
        var v = Validator()
        #expect(v.integer(5, "rating", range: 1...5) == 5)
        #expect(v.integer(6, "rating", range: 1...5) == nil)
        #expect(v.integer(nil, "limit", required: false, range: 1...100) == nil)
        #expect(v.integer(nil, "quantity", range: 1...100) == nil)
        #expect(v.errors == [FieldError("rating", "must be an integer from 1 to 5"), FieldError("quantity", "is required")])
    }

    @Test func coordinatesAreFiniteAndOnTheGlobe() {
        var v = Validator()
        #expect(v.coordinates(lat: 51.5, lon: -0.12, field: "location")! == (51.5, -0.12))
        #expect(v.coordinates(lat: -90, lon: 180, field: "edge")! == (-90, 180))
        #expect(v.coordinates(lat: 90.01, lon: .nan, field: "location") == nil)
        #expect(v.coordinates(lat: .infinity, lon: 0, field: "x") == nil)
        #expect(v.coordinates(lat: nil, lon: 10, field: "y") == nil)
        #expect(v.coordinates(lat: nil, lon: nil, field: "z", required: false) == nil)
        #expect(v.errors == [FieldError("location.lat", "must be a number from -90 to 90"), FieldError("location.lon", "must be a number from -180 to 180"),
                             FieldError("x.lat", "must be a number from -90 to 90"), FieldError("y.lat", "is required")])
    }

    // MARK: URLs, codes, ids, dates

    @Test(arguments: ["https://example.com", "http://example.com/a/b.jpg?x=1#y", "HTTPS://EXAMPLE.COM/", "https://[::1]:8443/p"])
    func acceptsAbsoluteWebURLs(text: String) {
        var v = Validator()
        #expect(v.url(text, "url")?.absoluteString == text)
        #expect(v.isValid)
    }

    @Test(arguments: ["example.com", "/relative/path", "javascript:alert(1)", "ftp://example.com/x", "https://", "https:example.com",
                      "https://exa mple.com", " https://example.com", "https://example.com/\n", "data:text/html,hi", "mailto:a@b.c", ""])
    func refusesOtherURLs(text: String) {
        var v = Validator()
        #expect(v.url(text, "media.0.url") == nil)
        #expect(v.errors == [FieldError("media.0.url", "must be an absolute https or http URL")])
    }

    @Test func urlLengthAndSchemesAreConfigurable() {
        var v = Validator()
        #expect(v.url("https://example.com/" + String(repeating: "a", count: 2048), "long") == nil)
        #expect(v.url("http://example.com", "secure", schemes: ["https"]) == nil)
        #expect(v.url("https://example.com/abc", "short", maxLength: 10) == nil)
        #expect(v.errors == [FieldError("long", "must be at most 2048 characters"), FieldError("secure", "must be an absolute https URL"),
                             FieldError("short", "must be at most 10 characters")])
    }

    @Test func countryCodesAreAssignedAlpha2InUpperCase() {
        #expect(CountryCodes.count == 249)
        var v = Validator()
        for code in ["GB", "US", "FR", "DE", "JP", "AX", "SS", "XK", "gb", "UK", "EU", "G", "GBR", ""] { _ = v.countryCode(code, code) }
        #expect(v.errors.map(\.field) == ["XK", "gb", "UK", "EU", "G", "GBR", ""])
        #expect(v.errors[0].message == "must be an ISO 3166-1 alpha-2 country code in upper case, such as GB")
    }

    @Test func currenciesUuidsAndDates() {
        var v = Validator()
        #expect(v.currency("JPY", "currency") == .jpy)
        #expect(v.currency("jpy", "c1") == nil)
        let id = UUID()
        #expect(v.uuid(id.uuidString.lowercased(), "id") == id)
        #expect(v.uuid("not-a-uuid", "u1") == nil)
        #expect(v.uuid("{\(id.uuidString)}", "u2") == nil)
        #expect(v.date("2024-02-29", "birthDate") == CalendarDate(year: 2024, month: 2, day: 29))
        #expect(v.date("2023-02-29", "d1") == nil)
        #expect(v.errors == [FieldError("c1", "must be an ISO 4217 currency code such as GBP"), FieldError("u1", "must be a UUID"),
                             FieldError("u2", "must be a UUID"), FieldError("d1", "must be a date (YYYY-MM-DD)")])
    }

    @Test(arguments: ["2024-02-29", "2000-02-29", "0000-01-01", "9999-12-31", "2023-12-31", "2023-04-30"])
    func calendarDatesThatExist(text: String) throws {
        let date = try #require(CalendarDate(text))
        #expect(date.description == text)
        #expect(try JSONDecoder().decode(CalendarDate.self, from: JSONEncoder().encode(date)) == date)
    }

    @Test(arguments: ["2023-02-29", "1900-02-29", "2023-04-31", "2023-13-01", "2023-00-10", "2023-01-00", "2023-1-01",
                      "2023-01-01T00:00:00Z", " 2023-01-01", "2023/01/01", "20230101", "", "\u{FF12}023-01-01", "+023-01-01", "2023-01-32"])
    func calendarDatesThatDoNot(text: String) {
        #expect(CalendarDate(text) == nil)
    }

    @Test func calendarDatesOrder() {
        #expect(CalendarDate("2023-12-31")! < CalendarDate("2024-01-01")!)
        #expect(CalendarDate("2024-02-01")! > CalendarDate("2024-01-31")!)
    }

    // MARK: Money

    @Test func moneyIsNotNegativeOrPositiveWhenAsked() {
        var v = Validator()
        let price = Money(amount: 125_000, currency: .gbp)
        #expect(v.money(price, "price") == price)
        #expect(v.money(Money.zero(.gbp), "free") == .zero(.gbp))
        #expect(v.money(Money.zero(.gbp), "refundAmount", positive: true) == nil)
        #expect(v.money(Money(amount: -1, currency: .gbp), "price") == nil)
        #expect(v.money(price, "other", currencies: [.eur, .usd]) == nil)
        #expect(v.money(nil, "missing") == nil)
        #expect(v.errors == [FieldError("refundAmount.amount", "must be greater than zero"), FieldError("price.amount", "must not be negative"),
                             FieldError("other.currency", "must be one of: EUR, USD"), FieldError("missing", "is required")])
    }

    @Test func looselyTypedMoneyReportsBothParts() {
        var v = Validator()
        #expect(v.money(amount: 1250, currency: "GBP", "price") == Money(amount: 1250, currency: .gbp))
        #expect(v.money(amount: nil, currency: "XYZ", "price") == nil)
        #expect(v.money(amount: -3, currency: "EUR", "fee") == nil)
        #expect(v.money(amount: nil, currency: nil, "optional", required: false) == nil)
        #expect(v.money(amount: nil, currency: nil, "needed") == nil)
        #expect(v.errors == [FieldError("price.amount", "is required"), FieldError("price.currency", "must be an ISO 4217 currency code such as GBP"),
                             FieldError("fee.amount", "must not be negative"), FieldError("needed", "is required")])
    }

    // MARK: JSON merge patch (RFC 7396, Appendix A)

    @Test(arguments: [
        (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
        (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#),
        (#"{"a":"b","b":"c"}"#, #"{"a":null}"#, #"{"b":"c"}"#),
        (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"c"}"#, #"{"a":["b"]}"#, #"{"a":["b"]}"#),
        (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
        (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
        (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
        (#"{"a":"b"}"#, #"["c"]"#, #"["c"]"#),
        (#"{"a":"foo"}"#, #"null"#, #"null"#),
        (#"{"a":"foo"}"#, #""bar""#, #""bar""#),
        (#"{"e":null}"#, #"{"a":1}"#, #"{"e":null,"a":1}"#),
        (#"[1,2]"#, #"{"a":"b","c":null}"#, #"{"a":"b"}"#),
        (#"{}"#, #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
    ])
    func mergePatchFollowsRFC7396AppendixA(original: String, patch: String, result: String) throws {
        #expect(JSONMergePatch.apply(try JSONValue(json: patch), to: try JSONValue(json: original)) == (try JSONValue(json: result)))
    }

    @Test func mergePatchNamesTheMembersItTouchesAndChanges() throws {
        let listing = try JSONValue(json: #"{"title":"Pup","price":{"amount":100,"currency":"GBP"},"quantity":1,"media":[]}"#)
        let patch = try JSONValue(json: #"{"title":"Pup","quantity":2,"price":{"amount":100},"media":null,"ghost":null}"#)
        #expect(JSONMergePatch.touchedMembers(patch) == ["ghost", "media", "price", "quantity", "title"])
        #expect(JSONMergePatch.changedMembers(patch, target: listing) == ["media", "quantity"])
        #expect(JSONMergePatch.touchedMembers(.array([])) == [])
        #expect(JSONMergePatch.changedMembers(try JSONValue(json: #"{"title":"New"}"#), target: listing) == ["title"])
    }
}
