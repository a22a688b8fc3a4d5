import Foundation

/// Turns text into search terms: split on anything not a letter or digit, fold accents and case
/// ("Montréal" → "montreal"), drop English stop words, and stem (Porter), so "puppies", "puppy"
/// and "Puppy's" meet. The same analysis runs on listings and on queries.
enum TextAnalyzer {
    /// Terms of `text`, in order (repeats kept: they are term frequencies).
    static func terms(_ text: String) -> [String] {
        words(text).compactMap { word in stopWords.contains(word) ? nil : PorterStemmer.stem(word) }
    }

    /// Folded words before stemming; the last one of a query is also matched as a prefix.
    static func words(_ text: String) -> [String] {
        var result: [String] = []
        var current: [UInt8] = []
        func flush() {
            if !current.isEmpty, current.count <= 40 { result.append(String(decoding: current, as: UTF8.self)) }
            current.removeAll(keepingCapacity: true)
        }
        for scalar in text.unicodeScalars {
            let value = scalar.value
            if value < 0x80 {
                switch value {
                case 0x30...0x39, 0x61...0x7A: current.append(UInt8(value))
                case 0x41...0x5A: current.append(UInt8(value + 32))
                case 0x27: continue  // an apostrophe joins ("collie's" → "collies")
                default: flush()
                }
            } else if let folded = fold(scalar) {
                current.append(contentsOf: folded.utf8)
            } else if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                current.append(contentsOf: String(scalar).lowercased().utf8)
            } else {
                flush()
            }
        }
        flush()
        return result
    }

    /// Latin letters with diacritics (and the common ligatures) as plain ASCII.
    private static func fold(_ scalar: Unicode.Scalar) -> String? {
        if let special = ligatures[scalar] { return special }
        guard (0xC0...0x24F).contains(scalar.value) || (0x1E00...0x1EFF).contains(scalar.value) else { return nil }
        // Canonical decomposition splits "é" into "e" and a combining accent; keep the base letter.
        let decomposed = String(scalar).decomposedStringWithCanonicalMapping.unicodeScalars
        guard let base = decomposed.first, base.value < 0x80, base.properties.isAlphabetic else { return nil }
        return String(base).lowercased()
    }

    private static let ligatures: [Unicode.Scalar: String] = [
        "ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d", "ł": "l", "Ł": "l",
        "þ": "th", "Þ": "th", "ð": "d", "Ð": "d",
    ]

    static let stopWords: Set<String> = [
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "in", "into", "is", "it", "its",
        "of", "on", "or", "our", "that", "the", "their", "this", "to", "was", "we", "were", "will", "with", "you", "your",
    ]
}

/// Martin Porter's 1980 suffix-stripping algorithm over lower-case ASCII (other words pass unchanged).
enum PorterStemmer {
    static func stem(_ word: String) -> String {
        var w = Array(word.utf8)
        guard w.count > 2, w.allSatisfy({ (0x61...0x7A).contains($0) }) else { return word }
        step1a(&w); step1b(&w); step1c(&w); step2(&w); step3(&w); step4(&w); step5(&w)
        return String(decoding: w, as: UTF8.self)
    }

    private static func isConsonant(_ w: [UInt8], _ i: Int) -> Bool {
        switch w[i] {
        case 0x61, 0x65, 0x69, 0x6F, 0x75: return false
        case 0x79: return i == 0 ? true : !isConsonant(w, i - 1)
        default: return true
        }
    }

    /// m: the number of vowel-consonant sequences in `w[0..<end]`.
    private static func measure(_ w: [UInt8], _ end: Int) -> Int {
        var m = 0, i = 0
        while i < end, isConsonant(w, i) { i += 1 }
        while i < end {
            while i < end, !isConsonant(w, i) { i += 1 }
            guard i < end else { break }
            m += 1
            while i < end, isConsonant(w, i) { i += 1 }
        }
        return m
    }

    private static func hasVowel(_ w: [UInt8], _ end: Int) -> Bool { (0..<end).contains { !isConsonant(w, $0) } }

    private static func endsDoubleConsonant(_ w: [UInt8], _ end: Int) -> Bool {
        end >= 2 && w[end - 1] == w[end - 2] && isConsonant(w, end - 1)
    }

    /// consonant-vowel-consonant at the end, the last not w, x or y.
    private static func endsCVC(_ w: [UInt8], _ end: Int) -> Bool {
        guard end >= 3, isConsonant(w, end - 1), !isConsonant(w, end - 2), isConsonant(w, end - 3) else { return false }
        return ![0x77, 0x78, 0x79].contains(w[end - 1])
    }

    private static func ends(_ w: [UInt8], _ suffix: String) -> Bool {
        var suffix = suffix
        return suffix.withUTF8 { s in
            guard w.count >= s.count else { return false }
            let start = w.count - s.count
            for index in 0..<s.count where w[start + index] != s[index] { return false }
            return true
        }
    }

    /// Replaces `suffix` by `replacement` when the stem before it has measure > `minimum`.
    @discardableResult
    private static func replace(_ w: inout [UInt8], _ suffix: String, _ replacement: String, minimum: Int = 0) -> Bool {
        guard ends(w, suffix) else { return false }
        let stemEnd = w.count - suffix.utf8.count
        if measure(w, stemEnd) > minimum {
            w.removeLast(suffix.utf8.count)
            w.append(contentsOf: replacement.utf8)
        }
        return true
    }

    private static func step1a(_ w: inout [UInt8]) {
        if ends(w, "sses") { w.removeLast(2) }
        else if ends(w, "ies") { w.removeLast(2) }
        else if ends(w, "ss") { return }
        else if ends(w, "s") { w.removeLast() }
    }

    private static func step1b(_ w: inout [UInt8]) {
        if ends(w, "eed") {
            if measure(w, w.count - 3) > 0 { w.removeLast() }
            return
        }
        var stripped = false
        if ends(w, "ed"), hasVowel(w, w.count - 2) { w.removeLast(2); stripped = true }
        else if ends(w, "ing"), hasVowel(w, w.count - 3) { w.removeLast(3); stripped = true }
        guard stripped else { return }
        if ends(w, "at") || ends(w, "bl") || ends(w, "iz") { w.append(0x65) }
        else if endsDoubleConsonant(w, w.count), ![0x6C, 0x73, 0x7A].contains(w[w.count - 1]) { w.removeLast() }
        else if measure(w, w.count) == 1, endsCVC(w, w.count) { w.append(0x65) }
    }

    private static func step1c(_ w: inout [UInt8]) {
        if ends(w, "y"), hasVowel(w, w.count - 1) { w[w.count - 1] = 0x69 }
    }

    private static let step2Rules: [(String, String)] = [
        ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"), ("abli", "able"),
        ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"),
        ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"),
    ]
    private static func step2(_ w: inout [UInt8]) {
        for (suffix, replacement) in step2Rules where replace(&w, suffix, replacement) { return }
    }

    private static let step3Rules: [(String, String)] = [
        ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", ""),
    ]
    private static func step3(_ w: inout [UInt8]) {
        for (suffix, replacement) in step3Rules where replace(&w, suffix, replacement) { return }
    }

    /// Longest first: the longest matching suffix decides (`ement` before `ment` before `ent`).
    private static let step4Suffixes = ["al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
                                        "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize"].sorted { $0.utf8.count > $1.utf8.count }
    private static func step4(_ w: inout [UInt8]) {
        for suffix in step4Suffixes where ends(w, suffix) {
            let stemEnd = w.count - suffix.utf8.count
            guard measure(w, stemEnd) > 1 else { return }
            if suffix == "ion", !(stemEnd > 0 && (w[stemEnd - 1] == 0x73 || w[stemEnd - 1] == 0x74)) { return }
            w.removeLast(suffix.utf8.count)
            return
        }
    }

    private static func step5(_ w: inout [UInt8]) {
        if ends(w, "e") {
            let m = measure(w, w.count - 1)
            if m > 1 || (m == 1 && !endsCVC(w, w.count - 1)) { w.removeLast() }
        }
        if measure(w, w.count) > 1, endsDoubleConsonant(w, w.count), w[w.count - 1] == 0x6C { w.removeLast() }
    }
}
