import Foundation
import Testing
@testable import Listings
@testable import Platform

/// The search read model against a plain filter over the same listings: random listings, random
/// edits and removals, random searches (text, categories, price, currency, attributes, ranges,
/// vendor, rating, distance, every sort, facets), every page followed by its cursor. The index is
/// checked as built by single upserts, as loaded in bulk, and after compaction.
@Suite struct SearchOracleTests {
    static let vendors: [(UUID, Double?)] = [(UUID(), 4.6), (UUID(), 3.1), (UUID(), nil)]
    static let places: [(Double, Double)] = [(51.5074, -0.1278), (53.4808, -2.2426), (55.9533, -3.1883)]
    static let breeds = ["Border Collie", "Labrador", "Pug", "Cocker Spaniel"]
    static let vocabulary = ["friendly", "puppy", "puppies", "trained", "kennel", "bowl", "kibble", "lovely", "crate", "food", "café"]
    /// Shown in titles only: what JSON must escape.
    static let awkward = [#""quoted""#, #"back\slash"#, "tab\there", "ünïcödé ✓"]

    typealias Generator = SplitMix64

    func randomDocument(_ id: UUID, using random: inout Generator) -> SearchDocument {
        func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }
        let sentence = (0..<Int.random(in: 1...4, using: &random)).map { _ in pick(Self.vocabulary) }.joined(separator: " ")
        let category: UUID, attributes: String
        switch Int.random(in: 0..<3, using: &random) {
        case 0:
            category = TestCategories.dogs
            let pedigree = Bool.random(using: &random) ? #","pedigree":true"# : ""
            attributes = #"{"breed":"\#(pick(Self.breeds))","sex":"\#(pick(["male", "female"]))","birthDate":"2026-0\#(Int.random(in: 1...9, using: &random))-15"\#(pedigree)}"#
        case 1:
            category = TestCategories.supplies
            attributes = #"{"condition":"\#(pick(["new", "used"]))","suitableFor":\#(pick([#"["dogs"]"#, #"["cats","dogs"]"#, "[]"]))}"#
        default:
            category = TestCategories.food
            attributes = #"{"condition":"new","brand":"\#(pick(["Acme", "Kibbleco"]))","weightKg":\#(Int.random(in: 1...20, using: &random))}"#
        }
        let place = pick(Self.places)
        return SearchDocument(
            id: id, vendorId: pick(Self.vendors).0, categoryId: category,
            title: sentence.capitalized + (Int.random(in: 0..<8, using: &random) == 0 ? " " + pick(Self.awkward) : ""),
            description: (0..<Int.random(in: 0...6, using: &random)).map { _ in pick(Self.vocabulary) }.joined(separator: " "),
            attributesJSON: attributes, priceAmount: Int64.random(in: 1...40, using: &random) * 250, currency: pick(["GBP", "GBP", "EUR"]),
            publishedAt: Date(timeIntervalSince1970: 1_790_000_000 + Double(Int.random(in: 0...50, using: &random)) * 60),
            lat: place.0 + Double.random(in: -0.4...0.4, using: &random), lon: place.1 + Double.random(in: -0.4...0.4, using: &random),
            city: "City", country: "GB", image: nil)
    }

    func randomQuery(using random: inout Generator) -> String {
        func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }
        func maybe(_ chance: Double) -> Bool { Double.random(in: 0..<1, using: &random) < chance }
        var parts: [String] = []
        var sorts = ["newest", "price_asc", "price_desc"]
        if maybe(0.35) {
            let words = (0..<Int.random(in: 1...2, using: &random)).map { _ in pick(Self.vocabulary) }
            var text = words.joined(separator: "+")
            if maybe(0.3) { text = String(text.dropLast(2)) }  // the last word as a prefix
            parts.append("q=" + text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["+"]))!)
            sorts.append("relevance")
        }
        let category = maybe(0.5) ? pick(["dogs", "pet-supplies", "pet-food"]) : nil
        if let category { parts.append("category=\(category)") }
        if maybe(0.3) { parts.append("priceMin=\(Int.random(in: 0...9, using: &random) * 250)") }
        if maybe(0.3) { parts.append("priceMax=\(Int.random(in: 10...40, using: &random) * 250)") }
        if maybe(0.2) { parts.append("currency=\(pick(["GBP", "EUR"]))") }
        if maybe(0.2) { parts.append("minRating=\(pick(["3", "4.5"]))") }
        if maybe(0.15) { parts.append("vendor=\(pick(Self.vendors).0.uuidString.lowercased())") }
        if maybe(0.3) {
            let place = pick(Self.places)
            parts.append("near=\(place.0 + 0.05),\(place.1 - 0.05)&radiusKm=\(pick([3, 10, 25, 60]))")
            sorts.append("distance")
        }
        switch category {
        case "dogs"?:
            if maybe(0.4) { parts.append("attr.sex=\(pick(["male", "female"]))") }
            if maybe(0.3) { parts.append("attr.breed=\(pick(["labrador", "pug"]))&attr.breed=Border%20Collie") }
            if maybe(0.3) { parts.append("attr.birthDate.min=2026-03-01") }
            if maybe(0.5) { parts.append("facets=category,attr.breed,attr.sex,attr.pedigree") }
        case "pet-supplies"?:
            if maybe(0.4) { parts.append("attr.suitableFor=cats") }
            if maybe(0.5) { parts.append("facets=category,attr.condition,attr.suitableFor,attr.brand") }
        case "pet-food"?:
            if maybe(0.4) { parts.append("attr.weightKg.min=\(Int.random(in: 1...10, using: &random))&attr.weightKg.max=15") }
            if maybe(0.5) { parts.append("facets=attr.brand") }
        default:
            if maybe(0.5) { parts.append("facets=category") }
        }
        parts.append("sort=\(pick(sorts))&limit=\(pick([2, 7, 20]))")
        return parts.joined(separator: "&")
    }

    /// What the query admits, by the definitions, one listing at a time.
    func admitted(_ document: SearchDocument, _ query: SearchQuery, tree: CategoryTree) -> Bool {
        if let categories = query.categories, !categories.contains(document.categoryId) { return false }
        if let low = query.priceMin, document.priceAmount < low { return false }
        if let high = query.priceMax, document.priceAmount > high { return false }
        if let currency = query.currency, document.currency != currency { return false }
        if let vendor = query.vendor, document.vendorId != vendor { return false }
        if let minimum = query.minRating {
            guard let rating = Self.vendors.first(where: { $0.0 == document.vendorId })?.1, rating >= minimum else { return false }
        }
        if let near = query.near, distanceKm(near.lat, near.lon, document.lat, document.lon) > query.radiusKm { return false }
        let attributes = try! JSONValue(json: document.attributesJSON)
        guard case .object(let members) = attributes else { return false }
        let kinds = tree.schemas[document.categoryId]?.properties ?? [:]
        for filter in query.attributes {
            let value = members[filter.name]
            if !filter.values.isEmpty {
                let scalars: [JSONValue] = if case .array(let items)? = value { items } else { value.map { [$0] } ?? [] }
                guard scalars.contains(where: { SearchIndex.valueKey($0).map(filter.values.contains) ?? false }) else { return false }
            }
            if filter.minimum != nil || filter.maximum != nil {
                let number: Double? = switch (kinds[filter.name]?.kind, value) {
                case (.number?, .number(let n)?), (.integer?, .number(let n)?): n
                case (.date?, .string(let text)?): SearchIndex.dayNumber(text)
                default: nil
                }
                guard let number, number >= (filter.minimum ?? -.infinity), number <= (filter.maximum ?? .infinity) else { return false }
            }
        }
        if let text = query.text {
            var terms = Set(TextAnalyzer.words(document.title + " " + document.description).filter { !TextAnalyzer.stopWords.contains($0) }.map(PorterStemmer.stem))
            for (_, value) in members {
                let texts: [String] = switch value {
                case .string(let s) where !s.isEmpty && !s.first!.isNumber: [s]
                case .array(let items): items.compactMap { if case .string(let s) = $0 { s } else { nil } }
                default: []
                }
                for text in texts { terms.formUnion(TextAnalyzer.words(text).filter { !TextAnalyzer.stopWords.contains($0) }.map(PorterStemmer.stem)) }
            }
            let words = TextAnalyzer.words(text)
            for (index, word) in words.enumerated() {
                let isLast = index == words.count - 1
                let exact = terms.contains(PorterStemmer.stem(word))
                let prefixed = isLast && word.utf8.count >= 2 && terms.contains { $0.hasPrefix(word) }
                if !exact && !prefixed { return false }
            }
        }
        return true
    }

    func distanceKm(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
        let φ1 = lat1 * .pi / 180, φ2 = lat2 * .pi / 180, dφ = (lat2 - lat1) * .pi / 180, dλ = (lon2 - lon1) * .pi / 180
        let a = sin(dφ / 2) * sin(dφ / 2) + cos(φ1) * cos(φ2) * sin(dλ / 2) * sin(dλ / 2)
        return 6371.0088 * 2 * atan2(sqrt(a), sqrt(1 - a))
    }

    /// The expected order for sorts that have one by definition (relevance and distance are
    /// compared as sets, with the distances checked to ascend).
    func expectedOrder(_ documents: [SearchDocument], _ sort: SearchQuery.Sort) -> [UUID]? {
        func time(_ d: SearchDocument) -> Int64 { Int64(d.publishedAt.timeIntervalSince1970 * 1000) }
        switch sort {
        case .newest: return documents.sorted { time($0) != time($1) ? time($0) > time($1) : $1.id.precedes($0.id) }.map(\.id)
        case .priceAsc: return documents.sorted { $0.priceAmount != $1.priceAmount ? $0.priceAmount < $1.priceAmount : $0.id.precedes($1.id) }.map(\.id)
        case .priceDesc: return documents.sorted { $0.priceAmount != $1.priceAmount ? $0.priceAmount > $1.priceAmount : $1.id.precedes($0.id) }.map(\.id)
        case .relevance, .distance: return nil
        }
    }

    func check(_ index: SearchIndex, against live: [UUID: SearchDocument], queries: [String], label: String) throws {
        let tree = try TestCategories.tree()
        let scratch = SearchScratch()  // shared by every search, as a replica's pool shares them
        var nonEmpty = 0
        for text in queries {
            let first = try SearchQuery.parse(SearchQuery.parameters(rawQuery: text), categories: tree)
            let expected = live.values.filter { admitted($0, first, tree: tree) }
            var seen: [UUID] = [], distances: [Double] = []
            var cursor: String? = nil, pages = 0
            repeat {
                let query = try SearchQuery.parse(SearchQuery.parameters(rawQuery: text + (cursor.map { "&cursor=\($0)" } ?? "")), categories: tree)
                let answer = index.search(query, scratch: scratch)
                #expect(answer.total == expected.count, "\(label): total of \(text)")
                if pages == 0 {
                    let page = try SearchPage(answer, query: query)
                    #expect(try page.encoded() == JSONWriter.encode(page), "\(label): the page of \(text) written directly")
                    for facet in first.facets {
                        // Ties are ordered by the shown text, so the counts are compared as sets, their order by count.
                        let counts = answer.facets[facet] ?? []
                        #expect(counts.map { "\($0.value.lowercased())=\($0.count)" }.sorted() == naiveFacet(facet, expected, tree: tree).sorted(),
                                "\(label): \(facet) of \(text)")
                        #expect(counts.map(\.count) == counts.map(\.count).sorted(by: >))
                    }
                }
                seen += answer.hits.map(\.document.id)
                distances += answer.hits.compactMap(\.distanceKm)
                cursor = answer.hasMore ? answer.hits.last.map { $0.cursor.encoded(binding: query.binding) } : nil
                pages += 1
            } while cursor != nil && pages <= expected.count + 1
            // Compared quietly: on a difference, say where, not the thousand ids.
            let wanted = expectedOrder(expected, first.sort)
            let same = wanted.map { seen == $0 } ?? (seen.count == expected.count && Set(seen) == Set(expected.map(\.id)))
            let firstDifference = wanted.flatMap { order in zip(seen, order).enumerated().first { $0.element.0 != $0.element.1 }?.offset }
            #expect(same, "\(label): pages of \(text): \(seen.count) seen, \(expected.count) expected, first difference at \(firstDifference ?? -1)")
            if first.sort == .distance { #expect(distances == distances.sorted(), "\(label): distances of \(text)") }
            if !expected.isEmpty { nonEmpty += 1 }
        }
        #expect(nonEmpty > queries.count / 3, "\(label): most searches find something (\(nonEmpty) of \(queries.count))")
    }

    /// Facet counts as the index shows them (most frequent first, ties by value, values lower-cased).
    func naiveFacet(_ facet: String, _ documents: [SearchDocument], tree: CategoryTree) -> [String] {
        var counts: [String: Int] = [:]
        for document in documents {
            if facet == "category" {
                counts[tree.categories.first { $0.id == document.categoryId }!.slug, default: 0] += 1
            } else if case .object(let members) = try! JSONValue(json: document.attributesJSON), let value = members[String(facet.dropFirst(5))] {
                let scalars: [JSONValue] = if case .array(let items) = value { items } else { [value] }
                for key in Set(scalars.compactMap(SearchIndex.valueKey)) { counts[key, default: 0] += 1 }
            }
        }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(50).map { "\($0.key)=\($0.value)" }
    }

    /// The larger run makes the biggest posting lists dense (bitsets beside the lists).
    @Test(arguments: [(1, 900), (2, 900), (3, 5000)])
    func theIndexAnswersWhatAPlainFilterAnswers(seed: UInt64, steps: Int) throws {
        var random = Generator(seed: seed)
        let tree = try TestCategories.tree()
        var incremental = SearchIndex(categories: tree)
        for (id, rating) in Self.vendors { incremental.setVendor(id, SearchVendor(displayName: "V", rating: rating)) }
        var live: [UUID: SearchDocument] = [:]
        var order: [UUID] = []
        for step in 0..<steps {
            if step % 4 == 3, let id = order.randomElement(using: &random) {
                if Bool.random(using: &random) {
                    let document = randomDocument(id, using: &random)
                    live[id] = document
                    incremental.upsert(document)
                } else {
                    live[id] = nil
                    order.removeAll { $0 == id }
                    incremental.remove(id)
                }
            } else {
                let document = randomDocument(UUID(), using: &random)
                live[document.id] = document
                order.append(document.id)
                incremental.upsert(document)
            }
        }
        var loaded = SearchIndex(categories: tree)
        for (id, rating) in Self.vendors { loaded.setVendor(id, SearchVendor(displayName: "V", rating: rating)) }
        loaded.beginLoading()
        for id in order { loaded.upsert(live[id]!) }
        loaded.finishLoading()

        let queries = (0..<(steps > 1000 ? 60 : 120)).map { _ in randomQuery(using: &random) }
        try check(incremental, against: live, queries: queries, label: "upserted")
        try check(loaded, against: live, queries: queries, label: "loaded")
        try check(incremental.compacted(), against: live, queries: queries, label: "compacted")
    }
}
