import Foundation

/// Finds the contact details in a message body that would take a trade off the platform before
/// it is paid for: phone numbers (international and local, spaced, with dots, dashes or
/// brackets), email addresses (also spelled out: "ann at example dot com"), social handles and
/// links to anywhere but the marketplace itself. `masked` replaces each with
/// `[contact details hidden]`; the original is kept elsewhere for moderators.
///
/// Measured against the labelled corpus in `Tests/ServiceTests/ContactCorpus.swift` (precision
/// and recall are printed by its test). What it does not catch on purpose: numbers spelled in
/// words, and handles given without an `@` or a site's name.
public struct ContactDetector: Sendable {
    public static let replacement = "[contact details hidden]"

    /// Hosts links may point to without being masked (the marketplace's own).
    public let allowedHosts: [String]

    public init(allowedHosts: [String] = []) {
        self.allowedHosts = allowedHosts.map { $0.lowercased() }
    }

    /// The body with every contact detail replaced, and whether anything was.
    public func masked(_ text: String) -> (text: String, masked: Bool) {
        let found = ranges(in: text)
        guard !found.isEmpty else { return (text, false) }
        var out = ""
        var index = text.startIndex
        for range in found {
            out += text[index..<range.lowerBound]
            out += Self.replacement
            index = range.upperBound
        }
        out += text[index...]
        return (out, true)
    }

    /// The contact details' ranges, in order, overlaps merged.
    public func ranges(in text: String) -> [Range<String.Index>] { ranges(in: text, hints: Hints(text)) }

    /// `hints` only skip patterns that cannot match (`Hints.everything` runs them all: the tests
    /// compare the two over the corpus).
    func ranges(in text: String, hints: Hints) -> [Range<String.Index>] {
        // Most messages hold none: a pattern runs only when the text has what any match of it needs.
        var found: [Range<String.Index>] = []
        if hints.at {
            for match in text.matches(of: Self.email) { found.append(match.range) }
        }
        if hints.spelledAt && (hints.dot || hints.spelledDot) {
            for match in text.matches(of: Self.spelledEmail) where !isAllowed(Self.spelledDomain(String(text[match.range]))) {
                found.append(match.range)
            }
        }
        if hints.dot || hints.scheme {
            for match in text.matches(of: Self.link) where !isAllowed(String(text[match.range])) { found.append(match.range) }
        }
        if hints.at {
            for match in text.matches(of: Self.handle) where Self.standsAlone(text, at: match.range.lowerBound) { found.append(match.range) }
        }
        guard hints.numbers >= Self.fewestDigits else { return Self.merged(found) }
        for match in text.matches(of: Self.phone) where Self.standsAlone(text, at: match.range.lowerBound) {
            // A bracket after the number is often a note, not part of it: `01632 960 456 (9-5)`.
            let candidate = String(text[match.range])
            if Self.isPhone(candidate) {
                found.append(match.range)
            } else if let note = candidate.range(of: " (", options: .backwards) {
                let number = String(candidate[..<note.lowerBound])
                if Self.isPhone(number) { found.append(match.range.lowerBound..<text.index(match.range.lowerBound, offsetBy: number.count)) }
            }
        }
        return Self.merged(found)
    }

    /// What a text holds that each pattern needs, found in one pass: an email address and a
    /// handle need `@`; a spelled-out address `at` and `dot` or `.`; a link `.` or `://`; a phone
    /// number at least `fewestDigits` numerals (`isPhone` counts them the same way).
    struct Hints {
        var at = false, dot = false, scheme = false, spelledAt = false, spelledDot = false
        var numbers = 0

        /// As if the text held everything: every pattern runs.
        static let everything: Hints = {
            var hints = Hints("")
            (hints.at, hints.dot, hints.scheme, hints.spelledAt, hints.spelledDot, hints.numbers) = (true, true, true, true, true, .max)
            return hints
        }()

        init(_ text: String) {
            var previous: (UInt8, UInt8) = (0, 0)
            for byte in text.utf8 {
                let lower = byte | 0x20  // ASCII letters to lower case; other bytes only compared below
                switch byte {
                case UInt8(ascii: "@"): at = true
                case UInt8(ascii: "."): dot = true
                case UInt8(ascii: "/") where previous.1 == UInt8(ascii: "/") && previous.0 == UInt8(ascii: ":"): scheme = true
                default: break
                }
                if lower == UInt8(ascii: "t") && previous.1 | 0x20 == UInt8(ascii: "a") { spelledAt = true }
                if lower == UInt8(ascii: "t") && previous.1 | 0x20 == UInt8(ascii: "o") && previous.0 | 0x20 == UInt8(ascii: "d") { spelledDot = true }
                previous = (previous.1, byte)
            }
            // Digits of any script count, as they do for `\d` and `isPhone`.
            for character in text where character.isNumber { numbers += 1 }
        }
    }

    /// The fewest numerals a phone number has (`isPhone`: 8 after `+` or `00`).
    static let fewestDigits = 8

    // MARK: Patterns
    // `nonisolated(unsafe)`: `Regex` is not declared Sendable, but matching never changes a regex
    // (its compiled program is built once, atomically); these are constants read by every request.

    /// `ann.smith+pups@example.co.uk`, also with spaces around `@` and the dots.
    nonisolated(unsafe) static let email = #/[A-Za-z0-9._%+\-]+\s?@\s?[A-Za-z0-9\-]+(?:\s?\.\s?[A-Za-z0-9\-]+)*\s?\.\s?[A-Za-z]{2,}/#

    /// `ann at example dot com`, `ann (at) example [dot] co [dot] uk`, `sue dot brown AT example DOT com`:
    /// spelled-out separators, ending in a common top-level domain ("meet at the park" does not).
    nonisolated(unsafe) static let spelledEmail = #/(?i)[A-Za-z0-9._%+\-]+(?:\s+dot\s+[A-Za-z0-9._%+\-]+)*\s*(?:\(at\)|\[at\]|\{at\}|\s+at\s+)\s*[A-Za-z0-9\-]+(?:\s*(?:\(dot\)|\[dot\]|\{dot\}|\s+dot\s+|\.)\s*[A-Za-z0-9\-]+)*\s*(?:\(dot\)|\[dot\]|\{dot\}|\s+dot\s+|\.)\s*(?:com|net|org|info|biz|io|me|co|uk|de|fr|es|it|nl|ie|eu|us|ca|au|app)\b/#

    /// `https://…`, `www.…`, and bare `name.tld/…` for the common top-level domains and messaging sites.
    nonisolated(unsafe) static let link = #/(?i)(?:https?://|www\.)[^\s<>"]+|\b[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.(?:com|net|org|info|biz|io|me|co|uk|de|fr|es|it|nl|ie|eu|us|ca|au|app|page|link|ly|gl|site|online|shop|store)\b(?:/[^\s<>"]*)?/#

    /// `@ann_pups` (not inside an email address).
    nonisolated(unsafe) static let handle = #/@[A-Za-z0-9_][A-Za-z0-9_.]{2,}/#

    /// Digits with the separators people write numbers with, optionally after `+` or `00`.
    nonisolated(unsafe) static let phone = #/(?:\+|\b00)?\(?\d[\d\s().\-]{6,}\d/#

    /// The domain of a spelled-out address, written plainly: `example (dot) com` → `example.com`.
    static func spelledDomain(_ candidate: String) -> String {
        let lowered = candidate.lowercased()
        let afterAt = lowered.split(separator: #/\(at\)|\[at\]|\{at\}|\s+at\s+/#).last.map(String.init) ?? lowered
        let domain: String = afterAt.replacing(#/\s*(?:\(dot\)|\[dot\]|\{dot\}|\s+dot\s+|\.)\s*/#, with: ".")
        return domain.trimmingCharacters(in: .whitespaces)
    }

    /// A run of digits is a phone number when it has as many digits as one: 9 to 12 written as a
    /// local number, 8 to 15 after `+` or `00`; not a date, a price with a decimal part, or a
    /// range of years.
    static func isPhone(_ candidate: String) -> Bool {
        let trimmed = candidate.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.filter(\.isNumber).count
        let international = trimmed.hasPrefix("+") || trimmed.hasPrefix("00")
        guard international ? (8...15).contains(digits) : (9...12).contains(digits) else { return false }
        // 12.05.2026, 2026-12-05, 05/12/2026 10 30: a date, not a number to call.
        if trimmed.wholeMatch(of: #/\d{1,4}[.\-/]\d{1,2}[.\-/]\d{2,4}(?:\s.*)?/#) != nil, digits <= 12,
           trimmed.filter({ $0 == "." || $0 == "-" }).count == 2, !trimmed.contains(" ") { return false }
        // 2019-2024, 1200-1500: two numbers of four digits.
        if trimmed.wholeMatch(of: #/\d{4}\s?[\-–]\s?\d{4}/#) != nil { return false }
        return true
    }

    /// An `@` that starts a word, not one inside an email address.
    static func standsAlone(_ text: String, at index: String.Index) -> Bool {
        guard index > text.startIndex else { return true }
        let before = text[text.index(before: index)]
        return !(before.isLetter || before.isNumber || "._%+-".contains(before))
    }

    func isAllowed(_ link: String) -> Bool {
        guard !allowedHosts.isEmpty else { return false }
        let lowered = link.lowercased()
        let host = lowered.replacingOccurrences(of: "https://", with: "").replacingOccurrences(of: "http://", with: "")
            .split(separator: "/").first.map(String.init) ?? lowered
        return allowedHosts.contains { host == $0 || host.hasSuffix("." + $0) }
    }

    static func merged(_ ranges: [Range<String.Index>]) -> [Range<String.Index>] {
        var out: [Range<String.Index>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, range.lowerBound <= last.upperBound {
                out[out.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                out.append(range)
            }
        }
        return out
    }
}
