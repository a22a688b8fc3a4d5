import Foundation
import Platform

/// A listing as search holds it: what filters, ranks, sorts and shows. The description is only
/// read for its terms.
struct SearchDocument: Sendable {
    var id: UUID
    var vendorId: UUID
    var categoryId: UUID
    var title: String
    var description: String
    /// The attributes' JSON text, as stored (shown as is).
    var attributesJSON: String
    var priceAmount: Int64
    var currency: String
    var publishedAt: Date
    var lat: Double
    var lon: Double
    var city: String
    var country: String
    var image: String?
}

/// The vendor as search shows and filters it.
struct SearchVendor: Sendable, Equatable {
    var displayName: String
    var rating: Double?
}

/// One search answer before it is written out.
struct SearchHit: Sendable {
    var document: StoredDocument
    var category: String
    var vendorId: UUID
    var vendor: SearchVendor
    var distanceKm: Double?
    var cursor: KeysetCursor
}

/// What an answer shows of a document (kept per slot; the hot filter columns live apart).
struct StoredDocument: Sendable {
    var id: UUID
    var title: String
    var attributesJSON: String
    var priceAmount: Int64
    var currency: String
    var publishedAt: Date
    var city: String
    var country: String
    var image: String?
}

struct SearchResult: Sendable {
    var hits: [SearchHit]
    var facets: [String: [(value: String, count: Int)]]
    var total: Int
    var hasMore: Bool
}

/// The in-memory read model of every visible listing, per replica: columns for filtering,
/// posting lists for text, categories and vendors, and per-document term and attribute lists.
///
/// Posting lists are *supersets*: a document that changes is appended where it now belongs and
/// left where it no longer does; every candidate is checked against its columns, so a stale
/// posting costs a check, never a wrong answer. Stale entries are swept when they outnumber live ones.
///
/// Not thread-safe by itself: `SearchReadModel` guards it with a readers-writer lock.
struct SearchIndex: Sendable {
    // Slot columns (one entry per slot; a removed listing's slot is dead until the next rebuild).
    private(set) var live: [Bool] = []
    private var ids: [UUID] = []
    private var category: [UInt16] = []
    private var price: [Int64] = []
    private var currency: [UInt8] = []
    private var vendor: [Int32] = []
    private var published: [Int64] = []
    private var lat: [Float] = []
    private var lon: [Float] = []
    /// Sorted (term id << 8 | weighted frequency).
    private var terms: [[UInt64]] = []
    private var length: [UInt16] = []
    /// Sorted (attribute id << 32 | value id): every scalar value and each array element.
    private var values: [[UInt64]] = []
    /// (attribute id, number) for numbers and dates (days since 1970-01-01).
    private var numbers: [[(UInt32, Double)]] = []
    private var stored: [StoredDocument?] = []

    private var slotOf: [UUID: Int32] = [:]
    private(set) var liveCount = 0
    private var deadCount = 0
    private var totalLength = 0

    // Dictionaries.
    private var termIds: [String: UInt32] = [:]
    /// A folded word's term id (its stem's), or `stopWord`: words repeat, so each is stemmed once.
    private var wordTerms: [String: UInt32] = [:]
    private static let stopWord = UInt32.max
    private var termText: [String] = []
    /// Term ids in the order of their text, for prefix ranges.
    private var sortedTerms: [UInt32] = []
    private var documentFrequency: [Int32] = []
    private var termPostings: [[Int32]] = []
    private var categoryIndex: [UUID: UInt16] = [:]
    private var categoryIds: [UUID] = []
    private var categorySlugs: [String] = []
    private var categoryPostings: [[Int32]] = []
    private var vendorIndex: [UUID: Int32] = [:]
    private var vendorIds: [UUID] = []
    private(set) var vendors: [SearchVendor] = []
    private var vendorPostings: [[Int32]] = []
    private var currencyIndex: [String: UInt8] = [:]
    private var attributeIds: [String: UInt32] = [:]
    private var valueIds: [[String: UInt32]] = []
    /// Each value's text as first seen (what a facet shows).
    private var valueText: [[String]] = []
    /// Slots per attribute value (a superset, like the other posting lists).
    private var valuePostings: [[[Int32]]] = []
    /// Live listings per category, and per category and attribute value: a browse of a whole
    /// category (no text, no other filter) reads its total and facets here instead of counting.
    private var categoryLive: [Int] = []
    private var categoryValueCounts: [[UInt64: Int]] = []

    /// The attribute kinds of each category's schema (numbers and dates get range columns).
    private let schemaKinds: [UUID: [String: JSONSchema.PropertyInfo]]

    init(categories: CategoryTree) {
        var kinds: [UUID: [String: JSONSchema.PropertyInfo]] = [:]
        for category in categories.categories {
            kinds[category.id] = categories.schemas[category.id]?.properties ?? [:]
            categoryIndex[category.id] = UInt16(categoryIds.count)
            categoryIds.append(category.id)
            categorySlugs.append(category.slug)
            categoryPostings.append([])
        }
        categoryLive = Array(repeating: 0, count: categoryIds.count)
        categoryValueCounts = Array(repeating: [:], count: categoryIds.count)
        schemaKinds = kinds
    }

    var count: Int { liveCount }

    /// Whether sweeping stale postings and dead slots is due.
    var needsCompaction: Bool { deadCount > 10_000 && deadCount > liveCount }

    // MARK: Writing

    mutating func setVendor(_ id: UUID, _ info: SearchVendor) {
        let index = vendorSlot(id)
        vendors[Int(index)] = info
    }

    /// Adds the listing, or replaces what the index held for it.
    mutating func upsert(_ document: SearchDocument) {
        guard let categoryNumber = categoryIndex[document.categoryId] else { return }
        let slot: Int32
        let previous: (terms: [UInt64], category: UInt16, vendor: Int32, values: [UInt64])?
        if let existing = slotOf[document.id], live[Int(existing)] {
            slot = existing
            let s = Int(existing)
            previous = (terms[s], category[s], vendor[s], values[s])
            uncount(slot: s)
            totalLength -= Int(length[s])
            for entry in terms[s] { documentFrequency[Int(entry >> 8)] -= 1 }
        } else {
            slot = Int32(ids.count)
            previous = nil
            ids.append(document.id); live.append(true); category.append(0); price.append(0); currency.append(0)
            vendor.append(0); published.append(0); lat.append(0); lon.append(0); terms.append([]); length.append(0)
            values.append([]); numbers.append([]); stored.append(nil)
            slotOf[document.id] = slot
            liveCount += 1
        }
        let s = Int(slot)
        let vendorNumber = vendorSlot(document.vendorId)
        category[s] = categoryNumber
        price[s] = document.priceAmount
        currency[s] = currencySlot(document.currency)
        vendor[s] = vendorNumber
        published[s] = Int64(document.publishedAt.timeIntervalSince1970 * 1000)
        lat[s] = Float(document.lat)
        lon[s] = Float(document.lon)
        stored[s] = StoredDocument(id: document.id, title: document.title, attributesJSON: document.attributesJSON,
                                   priceAmount: document.priceAmount, currency: document.currency, publishedAt: document.publishedAt,
                                   city: document.city, country: document.country, image: document.image)

        // Text: title words weigh three times a description word.
        let attributes = (try? JSONValue(json: document.attributesJSON)) ?? .object([:])
        var frequency: [UInt32: Int] = [:]
        var documentLength = 0
        for word in TextAnalyzer.words(document.title) {
            let term = wordTerm(word)
            if term != Self.stopWord { frequency[term, default: 0] += 3; documentLength += 1 }
        }
        for text in [document.description] + Self.attributeTexts(attributes) {
            for word in TextAnalyzer.words(text) {
                let term = wordTerm(word)
                if term != Self.stopWord { frequency[term, default: 0] += 1; documentLength += 1 }
            }
        }
        let newTerms = frequency.map { UInt64($0.key) << 8 | UInt64(min($0.value, 255)) }.sorted()
        let oldTermIds = Set(previous?.terms.map { UInt32($0 >> 8) } ?? [])
        for entry in newTerms {
            let term = UInt32(entry >> 8)
            documentFrequency[Int(term)] += 1
            if !oldTermIds.contains(term) { termPostings[Int(term)].append(slot) }
        }
        terms[s] = newTerms
        length[s] = UInt16(min(documentLength, Int(UInt16.max)))
        totalLength += Int(length[s])

        // Attributes: equality values, and numbers for ranges.
        var valueEntries: [UInt64] = []
        var numberEntries: [(UInt32, Double)] = []
        let kinds = schemaKinds[document.categoryId] ?? [:]
        if case .object(let members) = attributes {
            for (name, value) in members {
                let attribute = attributeSlot(name)
                let scalars: [JSONValue] = if case .array(let items) = value { items } else { [value] }
                for scalar in scalars {
                    guard let key = Self.valueKey(scalar) else { continue }
                    valueEntries.append(UInt64(attribute) << 32 | UInt64(valueSlot(attribute, key, display: Self.displayText(scalar))))
                }
                switch (kinds[name]?.kind, value) {
                case (.number?, .number(let number)), (.integer?, .number(let number)): numberEntries.append((attribute, number))
                case (.date?, .string(let text)): if let day = Self.dayNumber(text) { numberEntries.append((attribute, day)) }
                default: break
                }
            }
        }
        let sortedValues = valueEntries.sorted()
        let oldValues = Set(previous?.values ?? [])
        for entry in sortedValues where !oldValues.contains(entry) {
            valuePostings[Int(entry >> 32)][Int(entry & 0xFFFF_FFFF)].append(slot)
        }
        values[s] = sortedValues
        numbers[s] = numberEntries
        count(slot: s)

        if previous?.category != categoryNumber { categoryPostings[Int(categoryNumber)].append(slot) }
        if previous?.vendor != vendorNumber { vendorPostings[Int(vendorNumber)].append(slot) }
    }

    /// Drops the listing (it is no longer visible); its slot stays dead until the next rebuild.
    mutating func remove(_ id: UUID) {
        guard let slot = slotOf[id], live[Int(slot)] else { return }
        let s = Int(slot)
        uncount(slot: s)
        live[s] = false
        for entry in terms[s] { documentFrequency[Int(entry >> 8)] -= 1 }
        totalLength -= Int(length[s])
        terms[s] = []; values[s] = []; numbers[s] = []; stored[s] = nil
        slotOf[id] = nil
        liveCount -= 1
        deadCount += 1
    }

    private mutating func count(slot s: Int) {
        let c = Int(category[s])
        categoryLive[c] += 1
        for entry in values[s] { categoryValueCounts[c][entry, default: 0] += 1 }
    }

    private mutating func uncount(slot s: Int) {
        let c = Int(category[s])
        categoryLive[c] -= 1
        for entry in values[s] { categoryValueCounts[c][entry, default: 0] -= 1 }
    }

    /// The listings this index holds for a vendor.
    func listings(of vendorId: UUID) -> [UUID] {
        guard let number = vendorIndex[vendorId] else { return [] }
        return vendorPostings[Int(number)].compactMap { slot in
            live[Int(slot)] && vendor[Int(slot)] == number ? ids[Int(slot)] : nil
        }
    }

    private mutating func wordTerm(_ word: String) -> UInt32 {
        if let term = wordTerms[word] { return term }
        let term = TextAnalyzer.stopWords.contains(word) ? Self.stopWord : termSlot(PorterStemmer.stem(word))
        wordTerms[word] = term
        return term
    }

    private mutating func termSlot(_ term: String) -> UInt32 {
        if let id = termIds[term] { return id }
        let id = UInt32(termText.count)
        termIds[term] = id
        termText.append(term)
        documentFrequency.append(0)
        termPostings.append([])
        // Keep the text order for prefix lookups: binary search for the insertion point.
        var low = 0, high = sortedTerms.count
        while low < high {
            let middle = (low + high) / 2
            if termText[Int(sortedTerms[middle])] < term { low = middle + 1 } else { high = middle }
        }
        sortedTerms.insert(id, at: low)
        return id
    }

    private mutating func vendorSlot(_ id: UUID) -> Int32 {
        if let number = vendorIndex[id] { return number }
        let number = Int32(vendorIds.count)
        vendorIndex[id] = number
        vendorIds.append(id)
        vendors.append(SearchVendor(displayName: "", rating: nil))
        vendorPostings.append([])
        return number
    }

    private mutating func currencySlot(_ code: String) -> UInt8 {
        if let number = currencyIndex[code] { return number }
        let number = UInt8(min(currencyIndex.count + 1, 255))
        currencyIndex[code] = number
        return number
    }

    private mutating func attributeSlot(_ name: String) -> UInt32 {
        if let id = attributeIds[name] { return id }
        let id = UInt32(valueIds.count)
        attributeIds[name] = id
        valueIds.append([:])
        valueText.append([])
        valuePostings.append([])
        return id
    }

    private mutating func valueSlot(_ attribute: UInt32, _ key: String, display: String) -> UInt32 {
        if let id = valueIds[Int(attribute)][key] { return id }
        let id = UInt32(valueText[Int(attribute)].count)
        valueIds[Int(attribute)][key] = id
        valueText[Int(attribute)].append(display)
        valuePostings[Int(attribute)].append([])
        return id
    }

    // MARK: Values

    /// The key two equal attribute values share: strings without case, numbers in their shortest form.
    static func valueKey(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): text.lowercased()
        case .bool(let flag): flag ? "true" : "false"
        case .number(let number): number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        default: nil
        }
    }

    static func displayText(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): text
        default: valueKey(value) ?? ""
        }
    }

    /// Days since 1970-01-01 of an RFC 3339 full-date.
    static func dayNumber(_ text: String) -> Double? {
        guard let date = CalendarDate(text) else { return nil }
        // Days from civil (Howard Hinnant's algorithm).
        let y = date.month <= 2 ? date.year - 1 : date.year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (date.month + (date.month > 2 ? -3 : 9)) + 2) / 5 + date.day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return Double(era * 146_097 + doe - 719_468)
    }

    /// String values (and string array elements) are searchable text too: "labrador", "chocolate".
    private static func attributeTexts(_ attributes: JSONValue) -> [String] {
        guard case .object(let members) = attributes else { return [] }
        var texts: [String] = []
        for (_, value) in members {
            switch value {
            case .string(let text) where !text.isEmpty && !text.first!.isNumber: texts.append(text)
            case .array(let items): for case .string(let text) in items { texts.append(text) }
            default: break
            }
        }
        return texts
    }

    // MARK: Compaction

    /// A fresh index holding exactly the live documents (no dead slots, no stale postings).
    func compacted() -> SearchIndex {
        var fresh = SearchIndex(schemaKinds: schemaKinds, categoryIds: categoryIds, categorySlugs: categorySlugs)
        for (vendorId, number) in vendorIndex { fresh.setVendor(vendorId, vendors[Int(number)]) }
        fresh.copyLive(from: self)
        return fresh
    }

    private init(schemaKinds: [UUID: [String: JSONSchema.PropertyInfo]], categoryIds: [UUID], categorySlugs: [String]) {
        self.schemaKinds = schemaKinds
        self.categoryIds = categoryIds
        self.categorySlugs = categorySlugs
        self.categoryPostings = Array(repeating: [], count: categoryIds.count)
        self.categoryLive = Array(repeating: 0, count: categoryIds.count)
        self.categoryValueCounts = Array(repeating: [:], count: categoryIds.count)
        for (index, id) in categoryIds.enumerated() { categoryIndex[id] = UInt16(index) }
    }

    /// Copies the live slots column by column, re-numbering them densely.
    private mutating func copyLive(from other: SearchIndex) {
        termIds = other.termIds
        wordTerms = other.wordTerms
        termText = other.termText
        sortedTerms = other.sortedTerms
        documentFrequency = other.documentFrequency
        termPostings = Array(repeating: [], count: other.termPostings.count)
        currencyIndex = other.currencyIndex
        attributeIds = other.attributeIds
        valueIds = other.valueIds
        valueText = other.valueText
        valuePostings = other.valueText.map { Array(repeating: [], count: $0.count) }
        for old in other.ids.indices where other.live[old] {
            let slot = Int32(ids.count)
            ids.append(other.ids[old]); live.append(true); category.append(other.category[old]); price.append(other.price[old])
            currency.append(other.currency[old]); published.append(other.published[old]); lat.append(other.lat[old]); lon.append(other.lon[old])
            terms.append(other.terms[old]); length.append(other.length[old]); values.append(other.values[old])
            numbers.append(other.numbers[old]); stored.append(other.stored[old])
            let vendorNumber = vendorSlot(other.vendorIds[Int(other.vendor[old])])
            vendor.append(vendorNumber)
            slotOf[other.ids[old]] = slot
            for entry in other.terms[old] { termPostings[Int(entry >> 8)].append(slot) }
            for entry in other.values[old] { valuePostings[Int(entry >> 32)][Int(entry & 0xFFFF_FFFF)].append(slot) }
            categoryPostings[Int(other.category[old])].append(slot)
            vendorPostings[Int(vendorNumber)].append(slot)
            count(slot: Int(slot))
            totalLength += Int(other.length[old])
            liveCount += 1
        }
    }

    // MARK: Reading

    /// The term ids a query word stands for: its stem, and for the last word also every term it begins.
    private func termIds(forWord word: String, prefix: Bool) -> [UInt32] {
        var result: [UInt32] = []
        if !TextAnalyzer.stopWords.contains(word), let id = termIds[PorterStemmer.stem(word)] { result.append(id) }
        guard prefix, word.utf8.count >= 2 else { return result }
        var low = 0, high = sortedTerms.count
        while low < high {
            let middle = (low + high) / 2
            if termText[Int(sortedTerms[middle])] < word { low = middle + 1 } else { high = middle }
        }
        var index = low
        while index < sortedTerms.count, termText[Int(sortedTerms[index])].hasPrefix(word), result.count < 512 {
            result.append(sortedTerms[index])
            index += 1
        }
        return result
    }

    func search(_ query: SearchQuery) -> SearchResult {
        Self.isBrowse(query) ? browse(query) : scan(query)
    }

    /// Any search: candidates from the shortest posting lists, each checked, counted and ranked.
    func scan(_ query: SearchQuery) -> SearchResult {
        // Text: every word must match (the last one also as a prefix); each word is a set of term ids.
        var wordTerms: [[UInt32]] = []
        if let text = query.text {
            let words = TextAnalyzer.words(text)
            for (index, word) in words.enumerated() {
                let isLast = index == words.count - 1
                if TextAnalyzer.stopWords.contains(word), !isLast { continue }
                let ids = termIds(forWord: word, prefix: isLast)
                if ids.isEmpty, TextAnalyzer.stopWords.contains(word) { continue }
                if ids.isEmpty { return SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false) }
                wordTerms.append(ids.sorted())
            }
        }

        // Candidates: the shortest posting lists available; every filter is checked on each anyway.
        var sources: [[Int32]]? = nil
        var sourceSize = Int.max
        func consider(_ lists: [[Int32]]) {
            let size = lists.reduce(0) { $0 + $1.count }
            if size < sourceSize { sources = lists; sourceSize = size }
        }
        for ids in wordTerms { consider(ids.map { termPostings[Int($0)] }) }
        if let categories = query.categories { consider(categories.compactMap { categoryIndex[$0] }.map { categoryPostings[Int($0)] }) }
        if let vendorId = query.vendor {
            guard let number = vendorIndex[vendorId] else { return SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false) }
            consider([vendorPostings[Int(number)]])
        }

        // Filters resolved to numbers once.
        var allowedCategory: [Bool]? = nil
        if let categories = query.categories {
            var allowed = Array(repeating: false, count: categoryIds.count)
            for id in categories { if let index = categoryIndex[id] { allowed[Int(index)] = true } }
            allowedCategory = allowed
        }
        var currencyNumber: UInt8? = nil
        if let code = query.currency {
            guard let number = currencyIndex[code] else { return SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false) }
            currencyNumber = number
        }
        let vendorNumber = query.vendor.flatMap { vendorIndex[$0] }
        var equalities: [(attribute: UInt64, values: [UInt64])] = []
        var ranges: [(attribute: UInt32, minimum: Double, maximum: Double)] = []
        for filter in query.attributes {
            let attribute = attributeIds[filter.name]
            if !filter.values.isEmpty {
                guard let attribute else { return SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false) }
                let known = filter.values.compactMap { valueIds[Int(attribute)][$0] }.map { UInt64(attribute) << 32 | UInt64($0) }
                if known.isEmpty { return SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false) }
                equalities.append((UInt64(attribute), known.sorted()))
            }
            if filter.minimum != nil || filter.maximum != nil {
                guard let attribute else { return SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false) }
                ranges.append((attribute, filter.minimum ?? -.infinity, filter.maximum ?? .infinity))
            }
        }
        for equality in equalities {
            consider(equality.values.map { valuePostings[Int(equality.attribute)][Int($0 & 0xFFFF_FFFF)] })
        }
        let geo = query.near.map { GeoFilter(lat: $0.lat, lon: $0.lon, radiusKm: query.radiusKm) }

        // Facet counters.
        let facetCategory = query.facets.contains("category")
        var categoryCounts = facetCategory ? Array(repeating: 0, count: categoryIds.count) : []
        let facetAttributes: [(name: String, id: UInt32)] = query.facets.compactMap { facet in
            guard facet.hasPrefix("attr.") else { return nil }
            let name = String(facet.dropFirst(5))
            return attributeIds[name].map { (name, $0) }
        }
        var attributeCounts: [[Int]] = facetAttributes.map { Array(repeating: 0, count: valueText[Int($0.id)].count) }

        // Ranking.
        let average = liveCount == 0 ? 1.0 : Double(max(totalLength, 1)) / Double(liveCount)
        let idf: [[Double]] = wordTerms.map { ids in
            ids.map { id in
                let frequency = Double(max(documentFrequency[Int(id)], 0))
                return log(1 + (Double(liveCount) - frequency + 0.5) / (frequency + 0.5))
            }
        }

        var top = TopK(limit: query.limit + 1, sort: query.sort)
        var total = 0
        var seen = [UInt64](repeating: 0, count: (ids.count + 63) / 64)

        func visit(_ slot: Int32) {
            let s = Int(slot)
            guard live[s] else { return }
            if let allowedCategory, !allowedCategory[Int(category[s])] { return }
            if let currencyNumber, currency[s] != currencyNumber { return }
            if let low = query.priceMin, price[s] < low { return }
            if let high = query.priceMax, price[s] > high { return }
            if query.vendor != nil, vendor[s] != vendorNumber { return }
            if let minimum = query.minRating {
                guard let rating = vendors[Int(vendor[s])].rating, rating >= minimum else { return }
            }
            var distance: Double? = nil
            if let geo {
                guard let km = geo.distanceKm(lat: Double(lat[s]), lon: Double(lon[s])) else { return }
                distance = km
            }
            for equality in equalities {
                guard Self.containsAny(values[s], equality.values) else { return }
            }
            for range in ranges {
                guard numbers[s].contains(where: { $0.0 == range.attribute && $0.1 >= range.minimum && $0.1 <= range.maximum }) else { return }
            }
            var score = 0.0
            if !wordTerms.isEmpty {
                let documentTerms = terms[s]
                let norm = 1.2 * (0.25 + 0.75 * Double(length[s]) / average)
                for (index, ids) in wordTerms.enumerated() {
                    var best = 0.0
                    var matched = false
                    for (position, id) in ids.enumerated() {
                        guard let frequency = Self.frequency(of: id, in: documentTerms) else { continue }
                        matched = true
                        let tf = Double(frequency)
                        best = max(best, idf[index][position] * tf * 2.2 / (tf + norm))
                    }
                    guard matched else { return }
                    score += best
                }
            }
            total += 1
            if facetCategory { categoryCounts[Int(category[s])] += 1 }
            for (index, facet) in facetAttributes.enumerated() {
                for entry in values[s] where entry >> 32 == UInt64(facet.id) { attributeCounts[index][Int(entry & 0xFFFF_FFFF)] += 1 }
            }
            let key: SortKey = switch query.sort {
            case .relevance: .double(score)
            case .distance: .double(distance ?? 0)
            case .newest: .int(published[s])
            case .priceAsc, .priceDesc: .int(price[s])
            }
            if let cursor = query.cursor, !top.isAfter(key, ids[s], cursor: cursor) { return }
            top.offer(key, slot: slot, id: ids[s], distance: distance)
        }

        if let sources {
            for list in sources {
                for slot in list {
                    let word = Int(slot) >> 6, bit = UInt64(1) << UInt64(Int(slot) & 63)
                    if seen[word] & bit != 0 { continue }
                    seen[word] |= bit
                    visit(slot)
                }
            }
        } else {
            for slot in 0..<Int32(ids.count) { visit(slot) }
        }

        let ranked = top.sorted()
        let hasMore = ranked.count > query.limit
        let hits: [SearchHit] = ranked.prefix(query.limit).compactMap { entry in
            let s = Int(entry.slot)
            guard let document = stored[s] else { return nil }
            let cursorValue: SortKeyValue = switch entry.key {
            case .double(let value): .double(value)
            case .int(let value): query.sort == .newest ? .time(Date(timeIntervalSince1970: Double(value) / 1000)) : .int(value)
            }
            return SearchHit(document: document, category: categorySlugs[Int(category[s])], vendorId: vendorIds[Int(vendor[s])],
                             vendor: vendors[Int(vendor[s])], distanceKm: entry.distance.map { ($0 * 10).rounded() / 10 },
                             cursor: KeysetCursor(values: [cursorValue], id: ids[s]))
        }
        var facets: [String: [(value: String, count: Int)]] = [:]
        if facetCategory {
            facets["category"] = Self.top(categoryCounts.enumerated().map { (categorySlugs[$0.offset], $0.element) })
        }
        for (index, facet) in facetAttributes.enumerated() {
            facets["attr." + facet.name] = Self.top(attributeCounts[index].enumerated().map { (valueText[Int(facet.id)][$0.offset], $0.element) })
        }
        for facet in query.facets where facets[facet] == nil { facets[facet] = [] }
        return SearchResult(hits: hits, facets: facets, total: total, hasMore: hasMore)
    }

    /// A browse: at most a category, a sort by time or price, and facets. Nothing but the
    /// category narrows it, so its total and facets are the maintained counts.
    static func isBrowse(_ query: SearchQuery) -> Bool {
        query.text == nil && query.priceMin == nil && query.priceMax == nil && query.currency == nil && query.attributes.isEmpty
            && query.near == nil && query.vendor == nil && query.minRating == nil
            && (query.sort == .newest || query.sort == .priceAsc || query.sort == .priceDesc)
    }

    /// Total and facets from the counts; the page from one tight pass over the category's slots
    /// (time or price, and the id), with no text, attribute or facet work per listing.
    func browse(_ query: SearchQuery) -> SearchResult {
        var allowed = Array(repeating: query.categories == nil, count: categoryIds.count)
        for id in query.categories ?? [] { if let index = categoryIndex[id] { allowed[Int(index)] = true } }
        let inScope = allowed.indices.filter { allowed[$0] }
        let total = inScope.reduce(0) { $0 + categoryLive[$1] }

        var facets: [String: [(value: String, count: Int)]] = [:]
        for facet in query.facets {
            if facet == "category" {
                facets[facet] = Self.top(inScope.map { (categorySlugs[$0], categoryLive[$0]) })
            } else if let attribute = attributeIds[String(facet.dropFirst(5))] {
                var counts = Array(repeating: 0, count: valueText[Int(attribute)].count)
                for c in inScope {
                    for (entry, count) in categoryValueCounts[c] where entry >> 32 == UInt64(attribute) {
                        counts[Int(entry & 0xFFFF_FFFF)] += count
                    }
                }
                facets[facet] = Self.top(counts.enumerated().map { (valueText[Int(attribute)][$0.offset], $0.element) })
            } else {
                facets[facet] = []
            }
        }

        var top = TopK(limit: query.limit + 1, sort: query.sort)
        let byTime = query.sort == .newest
        var seen = [UInt64](repeating: 0, count: (ids.count + 63) / 64)
        live.withUnsafeBufferPointer { live in
            category.withUnsafeBufferPointer { category in
                (byTime ? published : price).withUnsafeBufferPointer { keys in
                    func consider(_ slot: Int32) {
                        let s = Int(slot)
                        guard live[s], allowed[Int(category[s])] else { return }
                        let key = SortKey.int(keys[s])
                        if let cursor = query.cursor, !top.isAfter(key, ids[s], cursor: cursor) { return }
                        top.offer(key, slot: slot, id: ids[s], distance: nil)
                    }
                    if query.categories == nil {
                        for slot in 0..<Int32(live.count) { consider(slot) }
                    } else {
                        for c in inScope {
                            for slot in categoryPostings[c] {
                                let word = Int(slot) >> 6, bit = UInt64(1) << UInt64(Int(slot) & 63)
                                if seen[word] & bit != 0 { continue }
                                seen[word] |= bit
                                consider(slot)
                            }
                        }
                    }
                }
            }
        }
        let ranked = top.sorted()
        let hits: [SearchHit] = ranked.prefix(query.limit).compactMap { entry in
            let s = Int(entry.slot)
            guard let document = stored[s] else { return nil }
            let cursorValue: SortKeyValue = switch entry.key {
            case .int(let value): byTime ? .time(Date(timeIntervalSince1970: Double(value) / 1000)) : .int(value)
            case .double(let value): .double(value)
            }
            return SearchHit(document: document, category: categorySlugs[Int(category[s])], vendorId: vendorIds[Int(vendor[s])],
                             vendor: vendors[Int(vendor[s])], distanceKm: nil, cursor: KeysetCursor(values: [cursorValue], id: ids[s]))
        }
        return SearchResult(hits: hits, facets: facets, total: total, hasMore: ranked.count > query.limit)
    }

    private func emptyFacets(_ query: SearchQuery) -> [String: [(value: String, count: Int)]] {
        Dictionary(uniqueKeysWithValues: query.facets.map { ($0, []) })
    }

    /// Values with a count, most frequent first (ties by value), at most 50.
    private static func top(_ counts: [(String, Int)]) -> [(value: String, count: Int)] {
        Array(counts.filter { $0.1 > 0 }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(50).map { (value: $0.0, count: $0.1) })
    }

    /// Whether two sorted lists share an element.
    private static func containsAny(_ sorted: [UInt64], _ wanted: [UInt64]) -> Bool {
        var i = 0, j = 0
        while i < sorted.count, j < wanted.count {
            if sorted[i] == wanted[j] { return true }
            if sorted[i] < wanted[j] { i += 1 } else { j += 1 }
        }
        return false
    }

    /// The weighted frequency of `term` in a document's sorted term list.
    private static func frequency(of term: UInt32, in entries: [UInt64]) -> UInt64? {
        var low = 0, high = entries.count
        let target = UInt64(term)
        while low < high {
            let middle = (low + high) / 2
            let value = entries[middle] >> 8
            if value == target { return entries[middle] & 0xFF }
            if value < target { low = middle + 1 } else { high = middle }
        }
        return nil
    }
}

/// A sort key: a score or distance, or an integer (milliseconds, minor units).
enum SortKey: Sendable {
    case double(Double)
    case int(Int64)
}

/// The best `limit` documents for a sort, kept by a bounded selection (no sorting of every match).
struct TopK {
    struct Entry {
        var key: SortKey
        var slot: Int32
        var id: UUID
        var distance: Double?
    }

    let limit: Int
    let sort: SearchQuery.Sort
    private var entries: [Entry] = []

    init(limit: Int, sort: SearchQuery.Sort) {
        self.limit = limit
        self.sort = sort
        entries.reserveCapacity(limit * 2)
    }

    /// Whether `a` comes before `b` in this sort (the id breaks ties, in the key's direction).
    func precedes(_ a: SortKey, _ aId: UUID, _ b: SortKey, _ bId: UUID) -> Bool { Self.precedes(sort, a, aId, b, bId) }

    static func precedes(_ sort: SearchQuery.Sort, _ a: SortKey, _ aId: UUID, _ b: SortKey, _ bId: UUID) -> Bool {
        switch (a, b) {
        case (.double(let x), .double(let y)):
            if x != y { return sort == .distance ? x < y : x > y }
            return sort == .distance ? aId.precedes(bId) : bId.precedes(aId)
        case (.int(let x), .int(let y)):
            if x != y { return sort == .priceAsc ? x < y : x > y }
            return sort == .priceAsc ? aId.precedes(bId) : bId.precedes(aId)
        default:
            return false
        }
    }

    /// Whether a document with `key` comes after the cursor's position.
    func isAfter(_ key: SortKey, _ id: UUID, cursor: KeysetCursor) -> Bool {
        let cursorKey: SortKey
        switch cursor.values.first {
        case .double(let value)?: cursorKey = .double(value)
        case .int(let value)?: cursorKey = .int(value)
        case .time(let date)?: cursorKey = .int(Int64((date.timeIntervalSince1970 * 1000).rounded()))
        default: return true
        }
        return precedes(cursorKey, cursor.id, key, id)
    }

    /// The last of the best `limit` once that many have been seen: anything not before it is out.
    private var worst: Entry?

    mutating func offer(_ key: SortKey, slot: Int32, id: UUID, distance: Double?) {
        if let worst, !Self.precedes(sort, key, id, worst.key, worst.id) { return }
        entries.append(Entry(key: key, slot: slot, id: id, distance: distance))
        if entries.count >= limit * 2 + 64 { trim() }
    }

    private mutating func trim() {
        let sort = self.sort
        entries.sort { Self.precedes(sort, $0.key, $0.id, $1.key, $1.id) }
        entries.removeLast(max(0, entries.count - limit))
        if entries.count == limit { worst = entries.last }
    }

    func sorted() -> [Entry] {
        var copy = self
        copy.trim()
        return copy.entries
    }
}

/// Great-circle distance with a bounding-box shortcut.
struct GeoFilter {
    let lat: Double
    let lon: Double
    let radiusKm: Double
    private let latDelta: Double
    private let lonDelta: Double

    init(lat: Double, lon: Double, radiusKm: Double) {
        self.lat = lat
        self.lon = lon
        self.radiusKm = radiusKm
        latDelta = radiusKm / 111.0
        let cosine = cos(lat * .pi / 180)
        lonDelta = cosine < 0.01 ? 360 : radiusKm / (111.32 * cosine)
    }

    /// The distance in km, or nil when beyond the radius.
    func distanceKm(lat pointLat: Double, lon pointLon: Double) -> Double? {
        guard abs(pointLat - lat) <= latDelta + 0.01 else { return nil }
        var dLon = abs(pointLon - lon)
        if dLon > 180 { dLon = 360 - dLon }
        guard dLon <= lonDelta + 0.01 else { return nil }
        let φ1 = lat * .pi / 180, φ2 = pointLat * .pi / 180
        let dφ = (pointLat - lat) * .pi / 180, dλ = (pointLon - lon) * .pi / 180
        let a = sin(dφ / 2) * sin(dφ / 2) + cos(φ1) * cos(φ2) * sin(dλ / 2) * sin(dλ / 2)
        let km = 6371.0088 * 2 * atan2(sqrt(a), sqrt(1 - a))
        return km <= radiusKm ? km : nil
    }
}

extension UUID {
    /// Byte order, as Postgres orders uuids.
    func precedes(_ other: UUID) -> Bool {
        let a = uuid, b = other.uuid
        let left = (UInt64(a.0) << 56 | UInt64(a.1) << 48 | UInt64(a.2) << 40 | UInt64(a.3) << 32
                    | UInt64(a.4) << 24 | UInt64(a.5) << 16 | UInt64(a.6) << 8 | UInt64(a.7),
                    UInt64(a.8) << 56 | UInt64(a.9) << 48 | UInt64(a.10) << 40 | UInt64(a.11) << 32
                    | UInt64(a.12) << 24 | UInt64(a.13) << 16 | UInt64(a.14) << 8 | UInt64(a.15))
        let right = (UInt64(b.0) << 56 | UInt64(b.1) << 48 | UInt64(b.2) << 40 | UInt64(b.3) << 32
                     | UInt64(b.4) << 24 | UInt64(b.5) << 16 | UInt64(b.6) << 8 | UInt64(b.7),
                     UInt64(b.8) << 56 | UInt64(b.9) << 48 | UInt64(b.10) << 40 | UInt64(b.11) << 32
                     | UInt64(b.12) << 24 | UInt64(b.13) << 16 | UInt64(b.14) << 8 | UInt64(b.15))
        return left < right
    }
}
