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
    /// Encoded once, when the listing enters the index.
    var attributes: EncodedJSON
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

/// The in-memory read model of every visible listing, per replica: columns for filtering and
/// sorting, posting lists (with bitsets once dense) for text, categories, vendors and attribute
/// values, and per-listing term and value lists for counting and removal.
///
/// A listing that changes takes a new slot and its old slot dies, so every posting list stays
/// exact and sorted; dead slots are dropped by `compacted()` once they outnumber live ones.
///
/// Not thread-safe by itself: `SearchReadModel` guards it with a readers-writer lock.
struct SearchIndex: Sendable {
    // Slot columns (one entry per slot; a removed listing's slot is dead until the next compaction).
    private var liveBits: [UInt64] = []
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
    /// Per attribute id, the number or date (days since 1970-01-01) of each slot, NaN when absent;
    /// empty for attributes that never held a number. A column may be shorter than the slots.
    private var numberColumns: [[Double]] = []
    /// Per attribute id, each slot's one value id + 1: 0 when absent, `severalValues` for an array
    /// (then `values` has them). Facets count from here; like number columns, a column may be short.
    private var valueColumns: [[UInt32]] = []
    private static let severalValues = UInt32.max
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
    private static let noAttributes = try! EncodedJSON(encoding: JSONValue.object([:]))
    private var termText: [String] = []
    /// Term ids in the order of their text, for prefix ranges.
    private var sortedTerms: [UInt32] = []
    private var documentFrequency: [Int32] = []
    private var termPostings: [PostingList] = []
    /// Each term posting's weighted frequency, beside its slot.
    private var termFrequencies: [[UInt8]] = []
    private var categoryIndex: [UUID: UInt16] = [:]
    private var categoryIds: [UUID] = []
    private var categorySlugs: [String] = []
    private var categoryPostings: [PostingList] = []
    private var vendorIndex: [UUID: Int32] = [:]
    private var vendorIds: [UUID] = []
    private(set) var vendors: [SearchVendor] = []
    private var vendorPostings: [PostingList] = []
    /// Slots per cell of each `GeoGrid`.
    private var coarseCells: [Int32: PostingList] = [:]
    private var fineCells: [Int32: PostingList] = [:]
    private var finestCells: [Int32: PostingList] = [:]
    /// Slots per currency number.
    private var currencyPostings: [PostingList] = [PostingList()]
    /// Every slot (dead ones too) ascending by (publication time, id) and by (price, id): a newest
    /// or price page is found by walking one from the cursor, a price range is a stretch of one.
    private var timeOrder: [Int32] = []
    private var priceOrder: [Int32] = []
    /// While a whole index is loaded, new slots are sorted into the orders once, at the end.
    private var ordersDeferred = false
    private var currencyIndex: [String: UInt8] = [:]
    private var attributeIds: [String: UInt32] = [:]
    private var valueIds: [[String: UInt32]] = []
    /// Each value's text as first seen (what a facet shows).
    private var valueText: [[String]] = []
    private var valuePostings: [[PostingList]] = []
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
            categoryPostings.append(PostingList())
        }
        categoryLive = Array(repeating: 0, count: categoryIds.count)
        categoryValueCounts = Array(repeating: [:], count: categoryIds.count)
        schemaKinds = kinds
    }

    var count: Int { liveCount }
    private var slotCount: Int { ids.count }

    /// Whether dropping dead slots is due.
    var needsCompaction: Bool { deadCount > 10_000 && deadCount > liveCount }

    // MARK: Writing

    mutating func setVendor(_ id: UUID, _ info: SearchVendor) {
        let index = vendorSlot(id)
        vendors[Int(index)] = info
    }

    /// Adds the listing in a new slot; what the index held for it before is dropped.
    mutating func upsert(_ document: SearchDocument) {
        remove(document.id)
        guard let categoryNumber = categoryIndex[document.categoryId] else { return }

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

        append(id: document.id, category: categoryNumber, price: document.priceAmount, currency: currencySlot(document.currency),
               vendor: vendorSlot(document.vendorId), published: Int64(document.publishedAt.timeIntervalSince1970 * 1000),
               lat: Float(document.lat), lon: Float(document.lon),
               terms: frequency.map { UInt64($0.key) << 8 | UInt64(min($0.value, 255)) }.sorted(),
               length: UInt16(min(documentLength, Int(UInt16.max))), values: Array(Set(valueEntries)).sorted(), numbers: numberEntries,
               stored: StoredDocument(id: document.id, title: document.title,
                                      attributes: (try? EncodedJSON(encoding: attributes)) ?? Self.noAttributes,
                                      priceAmount: document.priceAmount, currency: document.currency, publishedAt: document.publishedAt,
                                      city: document.city, country: document.country, image: document.image))
    }

    /// A new live slot, entered in every column, posting list and count.
    private mutating func append(id: UUID, category categoryNumber: UInt16, price amount: Int64, currency currencyNumber: UInt8,
                                 vendor vendorNumber: Int32, published time: Int64, lat latitude: Float, lon longitude: Float,
                                 terms termEntries: [UInt64], length documentLength: UInt16, values valueEntries: [UInt64],
                                 numbers numberEntries: [(UInt32, Double)], stored document: StoredDocument) {
        let slot = Int32(ids.count)
        ids.append(id); category.append(categoryNumber); price.append(amount); currency.append(currencyNumber)
        vendor.append(vendorNumber); published.append(time); lat.append(latitude); lon.append(longitude)
        terms.append(termEntries); length.append(documentLength); values.append(valueEntries); stored.append(document)
        SlotBits.insert(slot, into: &liveBits)
        slotOf[id] = slot
        liveCount += 1
        totalLength += Int(documentLength)
        let slots = ids.count
        for entry in termEntries {
            let term = Int(entry >> 8)
            documentFrequency[term] += 1
            termPostings[term].append(slot, slotCount: slots)
            termFrequencies[term].append(UInt8(entry & 0xFF))
        }
        for entry in valueEntries {
            valuePostings[Int(entry >> 32)][Int(entry & 0xFFFF_FFFF)].append(slot, slotCount: slots)
        }
        var previous: UInt64? = nil
        for entry in valueEntries {
            let a = Int(entry >> 32)
            if valueColumns[a].count < slots { valueColumns[a].append(contentsOf: repeatElement(0, count: slots - valueColumns[a].count)) }
            valueColumns[a][Int(slot)] = entry >> 32 == previous.map({ $0 >> 32 }) ? Self.severalValues : UInt32(entry & 0xFFFF_FFFF) + 1
            previous = entry
        }
        for (attribute, number) in numberEntries {
            let a = Int(attribute)
            if numberColumns[a].count < slots { numberColumns[a].append(contentsOf: repeatElement(.nan, count: slots - numberColumns[a].count)) }
            numberColumns[a][Int(slot)] = number
        }
        categoryPostings[Int(categoryNumber)].append(slot, slotCount: slots)
        vendorPostings[Int(vendorNumber)].append(slot, slotCount: slots)
        coarseCells[GeoGrid.coarse.cell(lat: Double(latitude), lon: Double(longitude)), default: PostingList()].append(slot, slotCount: slots)
        fineCells[GeoGrid.fine.cell(lat: Double(latitude), lon: Double(longitude)), default: PostingList()].append(slot, slotCount: slots)
        finestCells[GeoGrid.finest.cell(lat: Double(latitude), lon: Double(longitude)), default: PostingList()].append(slot, slotCount: slots)
        currencyPostings[Int(currencyNumber)].append(slot, slotCount: slots)
        if !ordersDeferred {
            timeOrder.insert(slot, at: Self.lowerBound(timeOrder, keys: published, ids: ids, key: time, id: id))
            priceOrder.insert(slot, at: Self.lowerBound(priceOrder, keys: price, ids: ids, key: amount, id: id))
        }
        count(slot: Int(slot))
    }

    /// For loading a whole index: slots added until `finishLoading()` are sorted into the orders
    /// then, at once, instead of one insertion each.
    mutating func beginLoading() {
        ordersDeferred = true
    }

    mutating func finishLoading() {
        guard ordersDeferred else { return }
        ordersDeferred = false
        let ids = self.ids, published = self.published, price = self.price
        timeOrder = Array(0..<Int32(slotCount))
        timeOrder.sort { a, b in published[Int(a)] != published[Int(b)] ? published[Int(a)] < published[Int(b)] : ids[Int(a)].precedes(ids[Int(b)]) }
        priceOrder = Array(0..<Int32(slotCount))
        priceOrder.sort { a, b in price[Int(a)] != price[Int(b)] ? price[Int(a)] < price[Int(b)] : ids[Int(a)].precedes(ids[Int(b)]) }
    }

    /// The first position in `order` whose (key, id) is not below (`key`, `id`).
    private static func lowerBound(_ order: [Int32], keys: [Int64], ids: [UUID], key: Int64, id: UUID) -> Int {
        var low = 0, high = order.count
        while low < high {
            let middle = (low + high) / 2
            let slot = Int(order[middle])
            if keys[slot] < key || (keys[slot] == key && ids[slot].precedes(id)) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Drops the listing (it is no longer visible); its slot stays dead until the next compaction.
    mutating func remove(_ id: UUID) {
        guard let slot = slotOf[id] else { return }
        let s = Int(slot)
        uncount(slot: s)
        SlotBits.remove(slot, from: &liveBits)
        for entry in terms[s] { documentFrequency[Int(entry >> 8)] -= 1 }
        totalLength -= Int(length[s])
        terms[s] = []; values[s] = []; stored[s] = nil
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

    private func isLive(_ slot: Int) -> Bool {
        slot >> 6 < liveBits.count && liveBits[slot >> 6] & (1 << UInt64(slot & 63)) != 0
    }

    /// The listings this index holds for a vendor.
    func listings(of vendorId: UUID) -> [UUID] {
        guard let number = vendorIndex[vendorId] else { return [] }
        return vendorPostings[Int(number)].slots.compactMap { slot in isLive(Int(slot)) ? ids[Int(slot)] : nil }
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
        termPostings.append(PostingList())
        termFrequencies.append([])
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
        vendorPostings.append(PostingList())
        return number
    }

    private mutating func currencySlot(_ code: String) -> UInt8 {
        if let number = currencyIndex[code] { return number }
        let number = UInt8(min(currencyIndex.count + 1, 255))
        currencyIndex[code] = number
        if currencyPostings.count <= Int(number) { currencyPostings.append(PostingList()) }
        return number
    }

    private mutating func attributeSlot(_ name: String) -> UInt32 {
        if let id = attributeIds[name] { return id }
        let id = UInt32(valueIds.count)
        attributeIds[name] = id
        valueIds.append([:])
        valueText.append([])
        valuePostings.append([])
        numberColumns.append([])
        valueColumns.append([])
        return id
    }

    private mutating func valueSlot(_ attribute: UInt32, _ key: String, display: String) -> UInt32 {
        if let id = valueIds[Int(attribute)][key] { return id }
        let id = UInt32(valueText[Int(attribute)].count)
        valueIds[Int(attribute)][key] = id
        valueText[Int(attribute)].append(display)
        valuePostings[Int(attribute)].append(PostingList())
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

    /// A fresh index holding exactly the live listings, in their order, with no dead slots.
    func compacted() -> SearchIndex {
        var fresh = SearchIndex(schemaKinds: schemaKinds, categoryIds: categoryIds, categorySlugs: categorySlugs)
        for (vendorId, number) in vendorIndex { fresh.setVendor(vendorId, vendors[Int(number)]) }
        fresh.ordersDeferred = true
        let renumbered = fresh.copyLive(from: self)
        // The live slots keep their relative order, so the orders carry over renumbered.
        fresh.ordersDeferred = false
        fresh.timeOrder = timeOrder.compactMap { renumbered[Int($0)] }
        fresh.priceOrder = priceOrder.compactMap { renumbered[Int($0)] }
        return fresh
    }

    private init(schemaKinds: [UUID: [String: JSONSchema.PropertyInfo]], categoryIds: [UUID], categorySlugs: [String]) {
        self.schemaKinds = schemaKinds
        self.categoryIds = categoryIds
        self.categorySlugs = categorySlugs
        self.categoryPostings = Array(repeating: PostingList(), count: categoryIds.count)
        self.categoryLive = Array(repeating: 0, count: categoryIds.count)
        self.categoryValueCounts = Array(repeating: [:], count: categoryIds.count)
        for (index, id) in categoryIds.enumerated() { categoryIndex[id] = UInt16(index) }
    }

    /// Copies the live slots in order, re-numbering them densely; answers each old slot's new one.
    private mutating func copyLive(from other: SearchIndex) -> [Int32?] {
        var renumbered = [Int32?](repeating: nil, count: other.slotCount)
        termIds = other.termIds
        wordTerms = other.wordTerms
        termText = other.termText
        sortedTerms = other.sortedTerms
        documentFrequency = Array(repeating: 0, count: other.documentFrequency.count)
        termPostings = Array(repeating: PostingList(), count: other.termPostings.count)
        termFrequencies = Array(repeating: [], count: other.termPostings.count)
        currencyIndex = other.currencyIndex
        currencyPostings = Array(repeating: PostingList(), count: other.currencyPostings.count)
        attributeIds = other.attributeIds
        valueIds = other.valueIds
        valueText = other.valueText
        valuePostings = other.valueText.map { Array(repeating: PostingList(), count: $0.count) }
        numberColumns = Array(repeating: [], count: other.numberColumns.count)
        valueColumns = Array(repeating: [], count: other.valueColumns.count)
        let numbered = other.numberColumns.indices.filter { !other.numberColumns[$0].isEmpty }
        for old in other.ids.indices where other.isLive(old) {
            let numbers: [(UInt32, Double)] = numbered.compactMap { attribute in
                let column = other.numberColumns[attribute]
                return old < column.count && !column[old].isNaN ? (UInt32(attribute), column[old]) : nil
            }
            append(id: other.ids[old], category: other.category[old], price: other.price[old], currency: other.currency[old],
                   vendor: vendorSlot(other.vendorIds[Int(other.vendor[old])]), published: other.published[old],
                   lat: other.lat[old], lon: other.lon[old], terms: other.terms[old], length: other.length[old],
                   values: other.values[old], numbers: numbers, stored: other.stored[old]!)
            renumbered[old] = Int32(slotCount - 1)
        }
        return renumbered
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

    func search(_ query: SearchQuery, scratch: SearchScratch = SearchScratch()) -> SearchResult {
        Self.isBrowse(query) ? browse(query, scratch: scratch) : scan(query, scratch: scratch)
    }

    /// Any search that is not a browse, in three steps over a bit set of slots:
    /// 1. what every posting-list filter admits (text words, categories, vendor, attribute
    ///    values), smallest filter first, intersected with the live slots;
    /// 2. one pass over those slots that checks the column filters (currency, price, rating,
    ///    distance, ranges), counts, and offers each survivor to the top k of the sort (relevance
    ///    scores are summed beforehand from the words' postings);
    /// 3. facet counts: each value's posting list intersected with the result, or the result's
    ///    own values counted when it is the smaller side.
    func scan(_ query: SearchQuery, scratch: SearchScratch = SearchScratch()) -> SearchResult {
        let nothing = SearchResult(hits: [], facets: emptyFacets(query), total: 0, hasMore: false)

        // Text: every word must match (the last one also as a prefix); each word is a set of term ids.
        var wordTerms: [[UInt32]] = []
        if let text = query.text {
            let words = TextAnalyzer.words(text)
            for (index, word) in words.enumerated() {
                let isLast = index == words.count - 1
                if TextAnalyzer.stopWords.contains(word), !isLast { continue }
                let ids = termIds(forWord: word, prefix: isLast)
                if ids.isEmpty, TextAnalyzer.stopWords.contains(word) { continue }
                if ids.isEmpty { return nothing }
                wordTerms.append(ids.sorted())
            }
        }

        // Step 1: the posting-list filters, each a union of lists.
        var filters: [[PostingList]] = wordTerms.map { $0.map { termPostings[Int($0)] } }
        if let categories = query.categories { filters.append(categories.compactMap { categoryIndex[$0] }.map { categoryPostings[Int($0)] }) }
        if let vendorId = query.vendor {
            guard let number = vendorIndex[vendorId] else { return nothing }
            filters.append([vendorPostings[Int(number)]])
        }
        var checks = ColumnChecks(query: query, vendors: vendors)
        var borderCells: [PostingList]? = nil
        if let geo = checks.geo, let cells = geo.cells(in: geo.grid) {
            let grid = geo.grid.degrees
            let postings = grid == GeoGrid.finest.degrees ? finestCells : grid == GeoGrid.fine.degrees ? fineCells : coarseCells
            let border = cells.border.compactMap { postings[$0] }
            borderCells = border
            filters.append(cells.inner.compactMap { postings[$0] } + border)
        }
        for filter in query.attributes {
            guard let attribute = attributeIds[filter.name].map(Int.init) else { return nothing }
            if !filter.values.isEmpty {
                let known = filter.values.compactMap { valueIds[attribute][$0] }
                if known.isEmpty { return nothing }
                filters.append(known.map { valuePostings[attribute][Int($0)] })
            }
            if filter.minimum != nil || filter.maximum != nil {
                checks.ranges.append((numberColumns[attribute], filter.minimum ?? -.infinity, filter.maximum ?? .infinity))
            }
        }
        if let code = query.currency {
            guard let number = currencyIndex[code] else { return nothing }
            filters.append([currencyPostings[Int(number)]])
        }
        var matches = matching(filters, scratch: scratch)
        defer { scratch.matches = matches }
        narrowByPrice(&matches, &checks)
        // Listings in cells the circle's edge crosses are measured now; the rest are inside. Only
        // a sort by distance still needs every listing's distance.
        if let geo = checks.geo, let borderCells {
            var border = [UInt64](repeating: 0, count: matches.count)
            border.withUnsafeMutableBufferPointer { border in for list in borderCells { list.add(to: border) } }
            for word in matches.indices {
                var remaining = matches[word] & border[word]
                while remaining != 0 {
                    let bit = remaining.trailingZeroBitCount
                    remaining &= remaining - 1
                    let s = word << 6 | bit
                    if geo.haversine(lat: Double(lat[s]), lon: Double(lon[s])) == nil { matches[word] &= ~(1 << UInt64(bit)) }
                }
            }
            if query.sort != .distance { checks.geo = nil }
        }

        // Relevance: each word adds its best term's BM25 weight, summed from the postings of matches.
        var score: [Float] = []
        defer {
            // Back to all zeros for the next search: only the first word's postings were scored.
            for id in wordTerms.first ?? [] where !score.isEmpty { for slot in termPostings[Int(id)].slots { score[Int(slot)] = 0 } }
            if !score.isEmpty { scratch.score = score }
        }
        if query.sort == .relevance, !wordTerms.isEmpty {
            score = scratch.zeros(\.score, count: slotCount)
            var best: [Float] = wordTerms.contains { $0.count > 1 } ? scratch.zeros(\.best, count: slotCount) : []
            defer { if !best.isEmpty { scratch.best = best } }
            let average = liveCount == 0 ? 1.0 : Double(max(totalLength, 1)) / Double(liveCount)
            for ids in wordTerms {
                let single = ids.count == 1
                for id in ids {
                    let frequency = Double(max(documentFrequency[Int(id)], 0))
                    let idf = log(1 + (Double(liveCount) - frequency + 0.5) / (frequency + 0.5))
                    let slots = termPostings[Int(id)].slots, frequencies = termFrequencies[Int(id)]
                    for index in slots.indices {
                        let s = Int(slots[index])
                        guard matches[s >> 6] & (1 << UInt64(s & 63)) != 0 else { continue }
                        let tf = Double(frequencies[index])
                        let norm = 1.2 * (0.25 + 0.75 * Double(length[s]) / average)
                        let weight = Float(idf * tf * 2.2 / (tf + norm))
                        if single { score[s] += weight } else { best[s] = max(best[s], weight) }
                    }
                }
                guard !single else { continue }
                for id in ids {
                    for slot in termPostings[Int(id)].slots where best[Int(slot)] != 0 {
                        score[Int(slot)] += best[Int(slot)]
                        best[Int(slot)] = 0
                    }
                }
            }
        }

        // Step 2: column filters, the count, and the page.
        let (ranked, total) = rank(&matches, query, score: score, checks: checks.isEmpty ? nil : checks)

        // Step 3: facets.
        var facets: [String: [(value: String, count: Int)]] = [:]
        for facet in query.facets {
            if facet == "category" {
                let counted = counts(in: matches, total: total, lists: categoryPostings) { s, counts in counts[Int(category[s])] += 1 }
                facets[facet] = Self.top(counted.enumerated().map { (categorySlugs[$0.offset], $0.element) })
            } else if facet.hasPrefix("attr."), let attribute = attributeIds[String(facet.dropFirst(5))] {
                let column = valueColumns[Int(attribute)]
                let counted = counts(in: matches, total: total, lists: valuePostings[Int(attribute)]) { s, counts in
                    let value = s < column.count ? column[s] : 0
                    if value == 0 { return }
                    if value != Self.severalValues { counts[Int(value - 1)] += 1; return }
                    for entry in values[s] where entry >> 32 == UInt64(attribute) { counts[Int(entry & 0xFFFF_FFFF)] += 1 }
                }
                facets[facet] = Self.top(counted.enumerated().map { (valueText[Int(attribute)][$0.offset], $0.element) })
            } else {
                facets[facet] = []
            }
        }
        return page(ranked, query, facets: facets, total: total)
    }

    /// A browse: at most a category, a sort by time or price, and facets. Nothing but the
    /// category narrows it, so its total and facets are the maintained counts.
    static func isBrowse(_ query: SearchQuery) -> Bool {
        query.text == nil && query.priceMin == nil && query.priceMax == nil && query.currency == nil && query.attributes.isEmpty
            && query.near == nil && query.vendor == nil && query.minRating == nil
            && (query.sort == .newest || query.sort == .priceAsc || query.sort == .priceDesc)
    }

    /// Total and facets from the counts; the page from one pass over the category's live slots
    /// (time or price, and the id), with no text, attribute or facet work per listing.
    func browse(_ query: SearchQuery, scratch: SearchScratch = SearchScratch()) -> SearchResult {
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

        var matches = matching(query.categories == nil ? [] : [inScope.map { categoryPostings[$0] }], scratch: scratch)
        defer { scratch.matches = matches }
        let (ranked, _) = rank(&matches, query, score: [], checks: nil)
        return page(ranked, query, facets: facets, total: total)
    }

    /// The live slots every filter admits; each filter is a union of posting lists. The smallest
    /// filter goes first (so its lists are walked while the result is still wide).
    private func matching(_ filters: [[PostingList]], scratch: SearchScratch) -> [UInt64] {
        let wordCount = SlotBits.words(for: slotCount)
        var matches = scratch.take(\.matches)
        matches.removeAll(keepingCapacity: true)
        matches.append(contentsOf: liveBits)
        if matches.count < wordCount { matches.append(contentsOf: repeatElement(0, count: wordCount - matches.count)) }
        guard !filters.isEmpty else { return matches }
        var union = scratch.take(\.union)
        defer { scratch.union = union }
        union.removeAll(keepingCapacity: true)
        union.append(contentsOf: repeatElement(0, count: wordCount))
        for filter in filters.sorted(by: { $0.reduce(0) { $0 + $1.count } < $1.reduce(0) { $0 + $1.count } }) {
            if filter.count == 1, filter[0].isDense {
                let bits = filter[0].bits
                for word in 0..<wordCount { matches[word] &= word < bits.count ? bits[word] : 0 }
            } else {
                union.withUnsafeMutableBufferPointer { union in
                    union.update(repeating: 0)
                    for list in filter { list.add(to: union) }
                }
                for word in 0..<wordCount { matches[word] &= union[word] }
            }
        }
        return matches
    }

    /// The filters a posting list cannot answer, checked slot by slot.
    private struct ColumnChecks {
        var priceMin: Int64
        var priceMax: Int64
        /// Per vendor number: whether its rating passes `minRating`.
        var ratingAllowed: [Bool]?
        var geo: GeoFilter?
        var ranges: [(column: [Double], minimum: Double, maximum: Double)] = []

        init(query: SearchQuery, vendors: [SearchVendor]) {
            priceMin = query.priceMin ?? .min
            priceMax = query.priceMax ?? .max
            ratingAllowed = query.minRating.map { minimum in vendors.map { $0.rating.map { $0 >= minimum } ?? false } }
            geo = query.near.map { GeoFilter(lat: $0.lat, lon: $0.lon, radiusKm: query.radiusKm) }
        }

        var isEmpty: Bool {
            priceMin == .min && priceMax == .max && ratingAllowed == nil && geo == nil && ranges.isEmpty
        }
    }

    /// Step 2 of a search: checks each slot of `matches` against the column filters (clearing the
    /// refused), counts the rest and keeps the best `limit + 1` after the cursor. Newest-first
    /// walks the slots backwards: they run roughly in publication order, so the best come first.
    private func rank(_ matches: inout [UInt64], _ query: SearchQuery, score: [Float], checks: ColumnChecks?) -> ([TopK.Entry], Int) {
        if checks == nil, query.sort != .relevance, query.sort != .distance {
            // Every match counts: the total is the bits, and the page may be a short walk.
            let total = matches.reduce(0) { $0 + $1.nonzeroBitCount }
            let walked = total == 0 ? slotCount : min(slotCount, (query.limit + 1) * slotCount / total)
            if walked < total * 2 { return (walk(matches, query), total) }
        }
        var top = TopK(limit: query.limit + 1, sort: query.sort)
        var total = 0
        let cursorKey = query.cursor.flatMap(TopK.key(of:)), cursorId = query.cursor?.id ?? UUID()
        let descending = query.sort == .newest
        let wordCount = matches.count
        for step in 0..<wordCount {
            let word = descending ? wordCount - 1 - step : step
            var remaining = matches[word], kept = remaining
            while remaining != 0 {
                let bit = descending ? 63 - remaining.leadingZeroBitCount : remaining.trailingZeroBitCount
                remaining &= ~(1 << UInt64(bit))
                let s = word << 6 | bit
                var haversine: Double? = nil
                if let checks {
                    var admitted = price[s] >= checks.priceMin && price[s] <= checks.priceMax
                    if admitted, let ratingAllowed = checks.ratingAllowed { admitted = ratingAllowed[Int(vendor[s])] }
                    if admitted, let geo = checks.geo {
                        haversine = geo.haversine(lat: Double(lat[s]), lon: Double(lon[s]))
                        admitted = haversine != nil
                    }
                    for range in checks.ranges where admitted {
                        let number = s < range.column.count ? range.column[s] : .nan
                        admitted = number >= range.minimum && number <= range.maximum
                    }
                    guard admitted else {
                        kept &= ~(1 << UInt64(bit))
                        continue
                    }
                }
                total += 1
                let key: SortKey = switch query.sort {
                case .relevance: .double(score.isEmpty ? 0 : Double(score[s]))
                case .distance: .double(haversine.map(GeoFilter.kilometres(haversine:)) ?? 0)
                case .newest: .int(published[s])
                case .priceAsc, .priceDesc: .int(price[s])
                }
                if let cursorKey {
                    let order = TopK.compare(query.sort, cursorKey, key)
                    if order > 0 || (order == 0 && !TopK.precedes(query.sort, cursorKey, cursorId, key, ids[s])) { continue }
                }
                if top.excludes(key) { continue }
                top.offer(key, slot: Int32(s), id: ids[s])
            }
            matches[word] = kept
        }
        return (top.sorted(), total)
    }

    /// A newest or price page found by walking that sort order from the cursor and taking the
    /// first `limit + 1` matches: cheap when matches are common, where ranking all would not be.
    private func walk(_ matches: [UInt64], _ query: SearchQuery) -> [TopK.Entry] {
        let byTime = query.sort == .newest
        let order = byTime ? timeOrder : priceOrder, keys = byTime ? published : price
        // The orders ascend by (key, id); newest and dearest first walk them backwards.
        let descending = query.sort != .priceAsc
        var position = descending ? order.count - 1 : 0
        if let cursor = query.cursor, case .int(let key)? = TopK.key(of: cursor) {
            let start = Self.lowerBound(order, keys: keys, ids: ids, key: key, id: cursor.id)
            position = descending ? start - 1 : start
            // Strictly after the cursor: skip its own listing (and dead copies of it).
            while !descending, position < order.count, keys[Int(order[position])] == key, ids[Int(order[position])] == cursor.id { position += 1 }
        }
        var entries: [TopK.Entry] = []
        while entries.count <= query.limit, position >= 0, position < order.count {
            let s = Int(order[position])
            if matches[s >> 6] & (1 << UInt64(s & 63)) != 0 {
                entries.append(TopK.Entry(key: .int(keys[s]), slot: Int32(s), id: ids[s]))
            }
            position += descending ? -1 : 1
        }
        return entries
    }

    /// A price range that admits fewer listings than match so far becomes a filter: its stretch
    /// of the price order, as bits. Otherwise price stays a check on each match.
    private func narrowByPrice(_ matches: inout [UInt64], _ checks: inout ColumnChecks) {
        guard checks.priceMin != .min || checks.priceMax != .max, !ordersDeferred else { return }
        let low = Self.lowerBound(priceOrder, keys: price, ids: ids, key: checks.priceMin, id: UUID(uuid: UUID.minimum))
        let high = checks.priceMax == .max ? priceOrder.count
            : Self.lowerBound(priceOrder, keys: price, ids: ids, key: checks.priceMax + 1, id: UUID(uuid: UUID.minimum))
        guard high - low < matches.reduce(0, { $0 + $1.nonzeroBitCount }) else { return }
        var range = [UInt64](repeating: 0, count: matches.count)
        if low < high {
            for slot in priceOrder[low..<high] { range[Int(slot) >> 6] |= 1 << UInt64(Int(slot) & 63) }
        }
        for word in matches.indices { matches[word] &= range[word] }
        checks.priceMin = .min
        checks.priceMax = .max
    }

    /// Facet counts for a result of `total` slots: each list intersected with it, or, when that
    /// would cost more, each of its slots' values counted (from a column, in slot order).
    private func counts(in matches: [UInt64], total: Int, lists: [PostingList], eachValue: (Int, inout [Int]) -> Void) -> [Int] {
        let intersecting = lists.reduce(0) { $0 + $1.countingCost(words: matches.count) }
        if intersecting <= total {
            return matches.withUnsafeBufferPointer { matches in lists.map { $0.count(in: matches) } }
        }
        var counts = Array(repeating: 0, count: lists.count)
        for word in matches.indices {
            var remaining = matches[word]
            while remaining != 0 {
                eachValue(word << 6 | remaining.trailingZeroBitCount, &counts)
                remaining &= remaining - 1
            }
        }
        return counts
    }

    /// The answer: the page of hits with their cursors, the facets and the total.
    private func page(_ ranked: [TopK.Entry], _ query: SearchQuery, facets: [String: [(value: String, count: Int)]], total: Int) -> SearchResult {
        let geo = query.near.map { GeoFilter(lat: $0.lat, lon: $0.lon, radiusKm: query.radiusKm) }
        let hits: [SearchHit] = ranked.prefix(query.limit).compactMap { entry in
            let s = Int(entry.slot)
            guard let document = stored[s] else { return nil }
            let cursorValue: SortKeyValue = switch entry.key {
            case .double(let value): .double(value)
            case .int(let value): query.sort == .newest ? .time(Date(timeIntervalSince1970: Double(value) / 1000)) : .int(value)
            }
            return SearchHit(document: document, category: categorySlugs[Int(category[s])], vendorId: vendorIds[Int(vendor[s])],
                             vendor: vendors[Int(vendor[s])], distanceKm: geo?.distanceKm(lat: Double(lat[s]), lon: Double(lon[s])).map { ($0 * 10).rounded() / 10 },
                             cursor: KeysetCursor(values: [cursorValue], id: ids[s]))
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

/// Slot-sized buffers a search works in, kept between searches (`SearchReadModel` pools them):
/// allocated afresh, their pages fault in on every request. One search uses one at a time.
final class SearchScratch: @unchecked Sendable {
    var matches: [UInt64] = []
    var union: [UInt64] = []
    /// All zeros between searches.
    var score: [Float] = []
    var best: [Float] = []

    /// The buffer, moved out (so it is uniquely referenced while it is written).
    func take<Element>(_ buffer: ReferenceWritableKeyPath<SearchScratch, [Element]>) -> [Element] {
        let taken = self[keyPath: buffer]
        self[keyPath: buffer] = []
        return taken
    }

    /// A score buffer of `count` zeros: the kept one when it fits (it is returned zeroed).
    func zeros(_ buffer: ReferenceWritableKeyPath<SearchScratch, [Float]>, count: Int) -> [Float] {
        let taken = take(buffer)
        return taken.count == count ? taken : Array(repeating: 0, count: count)
    }
}

/// A sort key: a score or distance, or an integer (milliseconds, minor units).
enum SortKey: Sendable {
    case double(Double)
    case int(Int64)
}

/// The best `limit` documents for a sort: a heap with the worst kept entry on top, so a
/// candidate that does not beat it costs one comparison and one that does costs O(log limit).
struct TopK {
    struct Entry {
        var key: SortKey
        var slot: Int32
        var id: UUID
    }

    let limit: Int
    let sort: SearchQuery.Sort
    /// Every parent is preceded by its children (or equal): the root is the worst kept.
    private var heap: [Entry] = []

    init(limit: Int, sort: SearchQuery.Sort) {
        self.limit = limit
        self.sort = sort
        heap.reserveCapacity(limit)
    }

    /// Whether `a` comes before `b` in this sort (the id breaks ties, in the key's direction).
    static func precedes(_ sort: SearchQuery.Sort, _ a: SortKey, _ aId: UUID, _ b: SortKey, _ bId: UUID) -> Bool {
        let order = compare(sort, a, b)
        if order != 0 { return order < 0 }
        return sort == .distance || sort == .priceAsc ? aId.precedes(bId) : bId.precedes(aId)
    }

    /// How two keys order in this sort, ids aside: negative when `a` comes first, 0 on a tie.
    @inline(__always)
    static func compare(_ sort: SearchQuery.Sort, _ a: SortKey, _ b: SortKey) -> Int {
        switch (a, b) {
        case (.double(let x), .double(let y)):
            if x == y { return 0 }
            return (sort == .distance ? x < y : x > y) ? -1 : 1
        case (.int(let x), .int(let y)):
            if x == y { return 0 }
            return (sort == .priceAsc ? x < y : x > y) ? -1 : 1
        default:
            return 0
        }
    }

    /// Whether a candidate with `key` cannot be kept, whatever its id: the heap is full and its
    /// worst entry's key comes strictly first. Most candidates end here, without touching their id.
    @inline(__always)
    func excludes(_ key: SortKey) -> Bool {
        heap.count == limit && (limit == 0 || Self.compare(sort, heap[0].key, key) < 0)
    }

    /// A cursor's position as a sort key.
    static func key(of cursor: KeysetCursor) -> SortKey? {
        switch cursor.values.first {
        case .double(let value)?: .double(value)
        case .int(let value)?: .int(value)
        case .time(let date)?: .int(Int64((date.timeIntervalSince1970 * 1000).rounded()))
        default: nil
        }
    }

    /// Keeps the candidate if it is among the best so far.
    mutating func offer(_ key: SortKey, slot: Int32, id: UUID) {
        guard limit > 0 else { return }
        if heap.count == limit, !Self.precedes(sort, key, id, heap[0].key, heap[0].id) { return }
        let entry = Entry(key: key, slot: slot, id: id)
        if heap.count < limit {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard precedes(heap[parent], heap[child]) else { break }
                heap.swapAt(parent, child)
                child = parent
            }
            return
        }
        heap[0] = entry
        var parent = 0
        while true {
            var worst = parent
            let left = 2 * parent + 1, right = left + 1
            if left < heap.count, precedes(heap[worst], heap[left]) { worst = left }
            if right < heap.count, precedes(heap[worst], heap[right]) { worst = right }
            if worst == parent { break }
            heap.swapAt(parent, worst)
            parent = worst
        }
    }

    private func precedes(_ a: Entry, _ b: Entry) -> Bool { Self.precedes(sort, a.key, a.id, b.key, b.id) }

    /// The kept entries, best first.
    func sorted() -> [Entry] {
        let sort = self.sort
        return heap.sorted { Self.precedes(sort, $0.key, $0.id, $1.key, $1.id) }
    }
}

/// Great-circle distance with a bounding-box shortcut.
struct GeoFilter {
    let lat: Double
    let lon: Double
    let radiusKm: Double
    private let latDelta: Double
    private let lonDelta: Double
    private let cosφ1: Double
    private let sinφ1: Double
    private let maximumHaversine: Double

    init(lat: Double, lon: Double, radiusKm: Double) {
        self.lat = lat
        self.lon = lon
        self.radiusKm = radiusKm
        latDelta = radiusKm / 111.0
        let cosine = cos(lat * .pi / 180)
        lonDelta = cosine < 0.01 ? 360 : radiusKm / (111.32 * cosine)
        cosφ1 = cosine
        sinφ1 = sin(lat * .pi / 180)
        let half = sin(min(radiusKm / Self.earthRadiusKm, .pi) / 2)
        maximumHaversine = half * half
    }

    /// The grid whose cells to gather candidates from: the finer, the smaller the radius (a
    /// circle should cover several cells, so most of its listings need no measuring).
    var grid: GeoGrid { radiusKm <= 8 ? .finest : radiusKm <= 40 ? .fine : .coarse }

    /// The cells of `grid` that hold every point within the radius (with the same margin as
    /// `haversine`), split into those wholly inside the circle and those its edge crosses; nil
    /// when the circle reaches so near a pole that the box is no help.
    func cells(in grid: GeoGrid) -> (inner: [Int32], border: [Int32])? {
        guard lonDelta < 170 else { return nil }
        let margin = 0.02, d = grid.degrees
        let rowLow = Int32(((max(lat - latDelta - margin, -90) + 90) / d).rounded(.down))
        let rowHigh = Int32(((min(lat + latDelta + margin, 90) + 90) / d).rounded(.down))
        let columnLow = Int32(((lon - lonDelta - margin + 180) / d).rounded(.down))
        let columnHigh = Int32(((lon + lonDelta + margin + 180) / d).rounded(.down))
        var inner: [Int32] = [], border: [Int32] = []
        for row in rowLow...rowHigh {
            let south = Double(row) * d - 90, north = south + d
            for column in columnLow...columnHigh {
                let west = Double(column) * d - 180, east = west + d
                // A small cell lies inside the circle when its corners do (with a sliver to spare).
                let isInner = [(south, west), (south, east), (north, west), (north, east)].allSatisfy { corner in
                    (haversine(lat: corner.0, lon: corner.1) ?? .infinity) <= maximumHaversine * 0.998
                }
                let cell = grid.cell(row: row, column: column)
                if isInner { inner.append(cell) } else { border.append(cell) }
            }
        }
        return (inner, border)
    }

    /// The haversine of the central angle to a point (the distance's monotone measure), or nil
    /// when the point is beyond the radius. Cheap enough for every candidate: a box test first,
    /// then series for the small angles a radius allows instead of calls into libm.
    func haversine(lat pointLat: Double, lon pointLon: Double) -> Double? {
        guard abs(pointLat - lat) <= latDelta + 0.01 else { return nil }
        var dLon = abs(pointLon - lon)
        if dLon > 180 { dLon = 360 - dLon }
        guard dLon <= lonDelta + 0.01 else { return nil }
        // Multiplications by reciprocals throughout: a division costs several times as much.
        let dφ = (pointLat - lat) * Self.radiansPerDegree, dλ = dLon * Self.radiansPerDegree
        let cosφ2: Double
        if abs(dφ) < 0.1 {
            // cos(φ1 + dφ) with the series of cos dφ and sin dφ (error below 1e-10 at 0.1 rad).
            let d2 = dφ * dφ
            let cosD = 1 - d2 * 0.5 * (1 - d2 * (1.0 / 12) * (1 - d2 * (1.0 / 30)))
            let sinD = dφ * (1 - d2 * (1.0 / 6) * (1 - d2 * (1.0 / 20)))
            cosφ2 = cosφ1 * cosD - sinφ1 * sinD
        } else {
            cosφ2 = cos(pointLat * Self.radiansPerDegree)
        }
        let h = Self.sinSquaredHalf(dφ) + cosφ1 * cosφ2 * Self.sinSquaredHalf(dλ)
        return h <= maximumHaversine ? h : nil
    }

    /// The distance in km, or nil when beyond the radius.
    func distanceKm(lat pointLat: Double, lon pointLon: Double) -> Double? {
        haversine(lat: pointLat, lon: pointLon).map(Self.kilometres(haversine:))
    }

    static func kilometres(haversine h: Double) -> Double {
        2 * earthRadiusKm * asin(min(1, h.squareRoot()))
    }

    private static let earthRadiusKm = 6371.0088
    private static let radiansPerDegree = Double.pi / 180

    /// sin²(x/2), by its series when x is small.
    @inline(__always)
    private static func sinSquaredHalf(_ x: Double) -> Double {
        let h = x * 0.5
        if abs(h) < 0.05 {
            let h2 = h * h
            let sine = h * (1 - h2 * (1.0 / 6) * (1 - h2 * (1.0 / 20) * (1 - h2 * (1.0 / 42))))
            return sine * sine
        }
        let sine = sin(h)
        return sine * sine
    }
}

/// A grid of square cells in degrees of latitude and longitude, numbered row by row.
struct GeoGrid: Sendable {
    let degrees: Double
    private let columns: Int32

    static let coarse = GeoGrid(degrees: 0.5)
    static let fine = GeoGrid(degrees: 0.1)
    static let finest = GeoGrid(degrees: 0.02)

    private init(degrees: Double) {
        self.degrees = degrees
        columns = Int32((360 / degrees).rounded())
    }

    func cell(lat: Double, lon: Double) -> Int32 {
        cell(row: Int32(((lat + 90) / degrees).rounded(.down)), column: Int32(((lon + 180) / degrees).rounded(.down)))
    }

    func cell(row: Int32, column: Int32) -> Int32 {
        row * columns + (column % columns + columns) % columns
    }
}

extension UUID {
    static let minimum: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

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
