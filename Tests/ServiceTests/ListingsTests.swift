import Foundation
import Testing
@testable import Listings
@testable import Platform

/// The listing's transition table, its policy, the search parameters and the search read model,
/// without a database.
@Suite struct ListingStateMachineTests {
    @Test func theTransitionTableIsExactlyThis() throws {
        let allowed: [ListingStatus: [ListingEvent: ListingStatus]] = [
            .draft: [.edit: .draft, .publish: .published, .submitForReview: .pendingReview, .delete: .draft],
            .pendingReview: [.edit: .pendingReview, .approve: .published, .reject: .rejected],
            .published: [.edit: .published, .returnToReview: .pendingReview, .close: .closed, .remove: .removed, .sellOut: .sold],
            .closed: [.edit: .closed, .publish: .published, .submitForReview: .pendingReview, .remove: .removed, .delete: .closed],
            .sold: [.edit: .sold, .close: .closed, .remove: .removed, .restock: .published],
            .rejected: [.edit: .rejected, .publish: .published, .submitForReview: .pendingReview, .delete: .rejected],
            .removed: [:],
        ]
        let (permitted, refused) = try expectTransitionTable(allowed) { try ListingStateMachine.transition(from: $0, on: $1).0 }
        #expect(permitted == 25)
        #expect(refused == ListingStatus.allCases.count * ListingEvent.allCases.count - 25)
    }

    @Test func effectsSayWhatBuyersAndTheVendorLearn() throws {
        #expect(try ListingStateMachine.transition(from: .draft, on: .publish).1 == [.emitPublished])
        #expect(try ListingStateMachine.transition(from: .draft, on: .submitForReview).1 == [])
        #expect(try ListingStateMachine.transition(from: .pendingReview, on: .approve).1 == [.emitPublished, .recordDecision])
        #expect(try ListingStateMachine.transition(from: .pendingReview, on: .reject).1 == [.recordDecision])
        #expect(try ListingStateMachine.transition(from: .published, on: .remove).1 == [.emitRemoved, .recordDecision])
        #expect(try ListingStateMachine.transition(from: .published, on: .close).1 == [.emitWithdrawn])
        #expect(try ListingStateMachine.transition(from: .published, on: .sellOut).1 == [.emitSold])
        #expect(try ListingStateMachine.transition(from: .sold, on: .restock).1 == [.emitPublished])
        #expect(try ListingStateMachine.transition(from: .published, on: .edit).1 == [.emitUpdated])
        #expect(try ListingStateMachine.transition(from: .draft, on: .edit).1 == [])
        #expect(try ListingStateMachine.transition(from: .closed, on: .delete).1 == [.deleteRow])
    }
}

@Suite struct ListingPolicyTests {
    enum Caller: CaseIterable {
        case anonymous, buyer, owner, otherVendor, ownerWithoutVendorRole, moderator, admin, moderatorWithoutSecondFactor
    }

    static let vendorId = UUID()

    func principal(_ caller: Caller) -> Principal? {
        switch caller {
        case .anonymous: nil
        case .buyer: Principal(userId: UUID(), roles: ["buyer"])
        case .owner: Principal(userId: Self.vendorId, roles: ["vendor"])
        case .otherVendor: Principal(userId: UUID(), roles: ["vendor"])
        case .ownerWithoutVendorRole: Principal(userId: Self.vendorId, roles: ["buyer"])
        case .moderator: Principal(userId: UUID(), roles: ["buyer", "moderator"], authenticationMethods: ["pwd", "otp"])
        case .admin: Principal(userId: UUID(), roles: ["admin"], authenticationMethods: ["pwd", "otp"])
        case .moderatorWithoutSecondFactor: Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd"])
        }
    }

    /// The expected answer: nil allowed, else the error.
    func expected(_ caller: Caller, _ action: ListingPolicy.Action, status: ListingStatus, hidden: Bool) -> ListingsError? {
        let owner = caller == .owner
        let staff = caller == .moderator || caller == .admin
        let visible = status == .published && !hidden
        if !(visible || owner || staff) { return .listingNotFound }
        switch action {
        case .read: return nil
        case .manage: return owner ? nil : .notYourListing
        case .moderate: return staff ? nil : .staffOnly
        }
    }

    @Test func everyCallerStatusVisibilityAndAction() {
        var checked = 0
        for caller in Caller.allCases {
            for status in ListingStatus.allCases {
                for hidden in [false, true] {
                    for action in ListingPolicy.Action.allCases {
                        let outcome: ListingsError?
                        do {
                            try ListingPolicy.authorize(action, status: status, hidden: hidden, vendorId: Self.vendorId, by: principal(caller))
                            outcome = nil
                        } catch let error as ListingsError {
                            outcome = error
                        } catch {
                            Issue.record("unexpected \(error)")
                            continue
                        }
                        #expect(outcome == expected(caller, action, status: status, hidden: hidden), "\(caller) \(action) \(status) hidden=\(hidden)")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked == Caller.allCases.count * ListingStatus.allCases.count * 2 * ListingPolicy.Action.allCases.count)
    }

    @Test func strangersNeverLearnThatAnUnpublishedListingExists() {
        for status in ListingStatus.allCases where status != .published {
            #expect(ListingsError.listingNotFound.problem.status == .notFound)
            #expect(throws: ListingsError.listingNotFound) {
                try ListingPolicy.authorize(.manage, status: status, hidden: false, vendorId: Self.vendorId, by: principal(.otherVendor))
            }
        }
    }
}

/// A small category tree like the seeded one: dogs (reviewed), pet supplies with pet food below.
enum TestCategories {
    static let dogs = UUID(), supplies = UUID(), food = UUID()

    static func tree() throws -> CategoryTree {
        func category(_ id: UUID, _ slug: String, parent: UUID?, facets: [String], review: Bool, schema: String) throws -> Category {
            Category(id: id, slug: slug, name: slug, parentId: parent, parent: nil, attributeSchema: try JSONValue(json: schema),
                     facetAttributes: facets, requiresReview: review)
        }
        return try CategoryTree([
            try category(dogs, "dogs", parent: nil, facets: ["breed", "sex", "pedigree"], review: true, schema: """
                {"type": "object", "additionalProperties": false, "required": ["breed", "sex", "birthDate"],
                 "properties": {"breed": {"type": "string", "minLength": 2}, "sex": {"enum": ["male", "female"]},
                                "birthDate": {"type": "string", "format": "date"}, "pedigree": {"type": "boolean"},
                                "color": {"type": "string"}}}
                """),
            try category(supplies, "pet-supplies", parent: nil, facets: ["condition", "suitableFor"], review: false, schema: """
                {"type": "object", "additionalProperties": false, "required": ["condition"],
                 "properties": {"condition": {"enum": ["new", "used"]}, "brand": {"type": "string"},
                                "suitableFor": {"type": "array", "items": {"enum": ["dogs", "cats"]}}}}
                """),
            try category(food, "pet-food", parent: supplies, facets: ["brand"], review: false, schema: """
                {"type": "object", "additionalProperties": false, "required": ["condition"],
                 "properties": {"condition": {"enum": ["new"]}, "brand": {"type": "string"}, "weightKg": {"type": "number"},
                                "bestBefore": {"type": "string", "format": "date"}}}
                """),
        ])
    }
}

@Suite struct SearchQueryTests {
    func parse(_ query: String) throws -> SearchQuery {
        try SearchQuery.parse(SearchQuery.parameters(rawQuery: query), categories: try TestCategories.tree())
    }

    @Test func theQueryStringIsReadAsFormsEncodeIt() {
        let pairs = SearchQuery.parameters(rawQuery: "q=border+collie&attr.breed=Caf%C3%A9%2Bau+lait&&flag&=x")
        #expect(pairs.map(\.0) == ["q", "attr.breed", "flag", ""])
        #expect(pairs.map(\.1) == ["border collie", "Café+au lait", "", "x"])
    }

    func errors(_ query: String) throws -> [FieldError] {
        let problem = try #require(throws: Problem.self) { try parse(query) }
        #expect(problem.status == .unprocessableContent)
        return problem.fieldErrors
    }

    @Test func aFullSearchParses() throws {
        let query = try parse("q=border+coll&category=pet-supplies&priceMin=100&priceMax=5000&currency=GBP&attr.brand=Acme&attr.brand=Bolt"
                              + "&attr.weightKg.min=1.5&attr.bestBefore.max=2027-01-01&near=51.5,-0.12&radiusKm=20&sort=distance"
                              + "&facets=category,attr.brand&limit=5&minRating=4")
        #expect(query.text == "border coll")
        #expect(query.categories == [TestCategories.supplies, TestCategories.food])
        #expect(query.priceMin == 100 && query.priceMax == 5000 && query.currency == "GBP")
        #expect(query.attributes.map(\.name) == ["bestBefore", "brand", "weightKg"])
        #expect(query.attributes[1].values == ["acme", "bolt"])
        #expect(query.attributes[2].minimum == 1.5)
        #expect(query.attributes[0].maximum == SearchIndex.dayNumber("2027-01-01"))
        #expect(query.near?.lat == 51.5 && query.radiusKm == 20 && query.sort == .distance)
        #expect(query.facets == ["category", "attr.brand"] && query.limit == 5 && query.minRating == 4)
    }

    @Test func theDefaultSortFollowsTheText() throws {
        #expect(try parse("q=collie").sort == .relevance)
        #expect(try parse("category=dogs").sort == .newest)
        #expect(try parse("").radiusKm == SearchQuery.defaultRadiusKm)
    }

    @Test func everyMistakeIsNamed() throws {
        let cases: [(String, String, String)] = [
            ("colour=red", "colour", "is not a search parameter"),
            ("q=a&q=b", "q", "may be given once"),
            ("category=cats", "category", "is not a category"),
            ("priceMin=-1", "priceMin", "whole number"),
            ("priceMin=abc", "priceMin", "whole number"),
            ("priceMin=500&priceMax=100", "priceMax", "must not be less than priceMin"),
            ("currency=XXZ", "currency", "ISO 4217"),
            ("near=91,0", "near", "latitude and longitude"),
            ("near=abc", "near", "latitude and longitude"),
            ("radiusKm=10", "radiusKm", "needs near"),
            ("near=51,0&radiusKm=501", "radiusKm", "at most 500"),
            ("near=51,0&radiusKm=0", "radiusKm", "above 0"),
            ("vendor=not-a-uuid", "vendor", "UUID"),
            ("minRating=6", "minRating", "from 1 to 5"),
            ("attr.colour=red", "attr.colour", "is not an attribute of any category"),
            ("category=pet-food&attr.breed=x", "attr.breed", "is not an attribute of category pet-food"),
            ("attr.sex=unknown", "attr.sex", "is not a value this attribute takes"),
            ("attr.pedigree=yes", "attr.pedigree", "is not a value"),
            ("attr.sex.min=a", "attr.sex", "takes no range"),
            ("attr.weightKg.min=heavy", "attr.weightKg.min", "must be a number or a date"),
            ("attr.weightKg.min=5&attr.weightKg.max=1", "attr.weightKg.max", "must not be less than the minimum"),
            ("attr.nothing.max=5", "attr.nothing", "is not an attribute"),
            ("sort=cheapest", "sort", "must be one of"),
            ("sort=relevance", "sort", "relevance needs q"),
            ("sort=distance", "sort", "distance needs near"),
            ("facets=attr.color", "facets", "is not a facet"),
            ("category=pet-food&facets=attr.breed", "facets", "is not a facet of category pet-food"),
            ("limit=0", "limit", "from 1 to 100"),
            ("limit=101", "limit", "from 1 to 100"),
            ("q=\(String(repeating: "a", count: 201))", "q", "at most 200"),
            ("=orphan", "query", "without a parameter name"),
        ]
        for (query, field, message) in cases {
            let found = try errors(query)
            #expect(found.contains { $0.field == field && $0.message.contains(message) }, "\(query): \(found)")
        }
        // Several mistakes at once are all named.
        #expect(try errors("colour=red&limit=0&attr.sex=x").count == 3)
    }

    @Test func aCursorBelongsToItsSearch() throws {
        let first = try parse("category=dogs&sort=price_asc")
        let cursor = KeysetCursor(values: [.int(1000)], id: UUID()).encoded(binding: first.binding)
        #expect(try parse("category=dogs&sort=price_asc&cursor=\(cursor)&limit=5").cursor != nil)
        #expect(try errors("category=pet-supplies&sort=price_asc&cursor=\(cursor)").map(\.field) == ["cursor"])
        #expect(try errors("category=dogs&sort=newest&cursor=\(cursor)").map(\.field) == ["cursor"])
        #expect(try errors("cursor=garbage").map(\.field) == ["cursor"])
    }
}

@Suite struct TextAnalyzerTests {
    @Test func wordsAreFoldedStemmedAndFiltered() {
        #expect(TextAnalyzer.terms("Puppies for the Café-au-lait lover, Montréal") == ["puppi", "cafe", "au", "lait", "lover", "montreal"])
        #expect(TextAnalyzer.terms("puppy") == TextAnalyzer.terms("puppies"))
        #expect(TextAnalyzer.terms("Collie's") == TextAnalyzer.terms("collies"))
        #expect(TextAnalyzer.terms("Straße ÆSIR øre") == ["strass", "aesir", "or"])
        #expect(TextAnalyzer.words("ÉLÉGANT chiots") == ["elegant", "chiots"])
    }

    @Test func porterStemsTheClassicExamples() {
        let examples = ["caresses": "caress", "ponies": "poni", "cats": "cat", "feed": "feed", "agreed": "agre", "plastered": "plaster",
                        "motoring": "motor", "sing": "sing", "conflated": "conflat", "hopping": "hop", "filing": "file", "happy": "happi",
                        "relational": "relat", "conditional": "condit", "vietnamization": "vietnam", "triplicate": "triplic",
                        "hopefulness": "hope", "revival": "reviv", "adjustment": "adjust", "adoption": "adopt", "controll": "control",
                        "generalization": "gener", "breeding": "breed", "vaccinated": "vaccin", "vaccination": "vaccin"]
        for (word, stem) in examples { #expect(PorterStemmer.stem(word) == stem, "\(word)") }
    }
}

@Suite struct SearchIndexTests {
    static let vendorA = UUID(), vendorB = UUID()

    func document(_ title: String, category: UUID = TestCategories.dogs, attributes: String = #"{"breed":"Border Collie","sex":"female","birthDate":"2026-05-01"}"#,
                  price: Int64 = 50_000, currency: String = "GBP", vendor: UUID = vendorA, published: Double = 0,
                  at place: (Double, Double) = (51.5074, -0.1278), description: String = "A lovely animal.") -> SearchDocument {
        SearchDocument(id: UUID(), vendorId: vendor, categoryId: category, title: title, description: description, attributesJSON: attributes,
                       priceAmount: price, currency: currency, publishedAt: Date(timeIntervalSince1970: 1_790_000_000 + published),
                       lat: place.0, lon: place.1, city: "London", country: "GB", image: nil)
    }

    func index(_ documents: [SearchDocument]) throws -> SearchIndex {
        var index = SearchIndex(categories: try TestCategories.tree())
        index.setVendor(Self.vendorA, SearchVendor(displayName: "Ann", rating: 4.6))
        index.setVendor(Self.vendorB, SearchVendor(displayName: "Ben", rating: 3.1))
        for document in documents { index.upsert(document) }
        return index
    }

    func query(_ text: String) throws -> SearchQuery {
        try SearchQuery.parse(SearchQuery.parameters(rawQuery: text), categories: try TestCategories.tree())
    }

    func titles(_ index: SearchIndex, _ text: String) throws -> [String] {
        index.search(try query(text)).hits.map(\.document.title)
    }

    @Test func textIsStemmedAccentFreeAndPrefixedOnTheLastWord() throws {
        let index = try index([
            document("Border collie puppies", published: 1),
            document("Chiots bergers à Montréal", attributes: #"{"breed":"Berger Blanc Suisse","sex":"male","birthDate":"2026-05-01"}"#, published: 2),
            document("Labrador puppy", attributes: #"{"breed":"Labrador Retriever","sex":"male","birthDate":"2026-05-01"}"#, published: 3),
        ])
        #expect(try titles(index, "q=puppy&sort=newest") == ["Labrador puppy", "Border collie puppies"])
        #expect(try titles(index, "q=montreal") == ["Chiots bergers à Montréal"])
        #expect(try titles(index, "q=MONTRÉAL") == ["Chiots bergers à Montréal"])
        #expect(try titles(index, "q=border+col") == ["Border collie puppies"])
        #expect(try titles(index, "q=retriever") == ["Labrador puppy"], "attribute values are text too")
        #expect(try titles(index, "q=labrador+collie").isEmpty, "every word must match")
        #expect(try titles(index, "q=the+puppies").count == 2, "stop words are ignored")
        #expect(try titles(index, "q=zebra").isEmpty)
    }

    @Test func relevanceRanksTheTitleAboveTheDescription() throws {
        let index = try index([
            document("Collie cross", published: 2, description: "Friendly dog, not a spaniel."),
            document("Spaniel puppies", published: 1, description: "Spaniel spaniel."),
        ])
        #expect(try titles(index, "q=spaniel") == ["Spaniel puppies", "Collie cross"])
    }

    @Test func filtersFacetsAndCounts() throws {
        let index = try index([
            document("Collie A", price: 40_000, published: 1),
            document("Collie B", attributes: #"{"breed":"Border Collie","sex":"male","birthDate":"2026-01-10","pedigree":true}"#, price: 90_000,
                     vendor: Self.vendorB, published: 2),
            document("Bowl", category: TestCategories.supplies, attributes: #"{"condition":"used","suitableFor":["dogs","cats"]}"#, price: 1_500, published: 3),
            document("Kibble", category: TestCategories.food, attributes: #"{"condition":"new","brand":"Acme","weightKg":12.5,"bestBefore":"2027-03-01"}"#,
                     price: 4_000, currency: "EUR", published: 4),
        ])
        #expect(try titles(index, "category=pet-supplies") == ["Kibble", "Bowl"], "subcategories are included")
        #expect(try titles(index, "priceMin=2000&priceMax=50000") == ["Kibble", "Collie A"])
        #expect(try titles(index, "currency=EUR") == ["Kibble"])
        #expect(try titles(index, "attr.sex=male&attr.sex=female") == ["Collie B", "Collie A"])
        #expect(try titles(index, "attr.breed=border%20collie&attr.pedigree=true") == ["Collie B"])
        #expect(try titles(index, "attr.birthDate.max=2026-03-01") == ["Collie B"])
        #expect(try titles(index, "category=pet-food&attr.weightKg.min=10&attr.weightKg.max=20") == ["Kibble"])
        #expect(try titles(index, "attr.suitableFor=cats") == ["Bowl"])
        #expect(try titles(index, "minRating=4") == ["Kibble", "Bowl", "Collie A"])
        #expect(try titles(index, "vendor=\(Self.vendorB.uuidString.lowercased())") == ["Collie B"])
        let faceted = index.search(try query("facets=category,attr.sex,attr.suitableFor"))
        #expect(faceted.total == 4)
        #expect(faceted.facets["category"]?.map(\.value) == ["dogs", "pet-food", "pet-supplies"])
        #expect(faceted.facets["category"]?.map(\.count) == [2, 1, 1])
        #expect(faceted.facets["attr.sex"]?.map { "\($0.value)=\($0.count)" } == ["female=1", "male=1"])
        #expect(faceted.facets["attr.suitableFor"]?.map { "\($0.value)=\($0.count)" } == ["cats=1", "dogs=1"])
    }

    @Test func distanceFiltersSortsAndIsShown() throws {
        let index = try index([
            document("London", at: (51.5074, -0.1278)),
            document("Cambridge", at: (52.2053, 0.1218)),
            document("Edinburgh", at: (55.9533, -3.1883)),
        ])
        let answer = index.search(try query("near=51.5074,-0.1278&radiusKm=100&sort=distance"))
        #expect(answer.hits.map(\.document.title) == ["London", "Cambridge"])
        #expect(answer.hits[0].distanceKm == 0)
        #expect(abs((answer.hits[1].distanceKm ?? 0) - 79.6) < 1.5)
        #expect(try titles(index, "near=51.5074,-0.1278&radiusKm=500&sort=distance") == ["London", "Cambridge"])
    }

    @Test func everySortPagesByCursorWithoutGapsOrRepeats() throws {
        var documents: [SearchDocument] = []
        for n in 0..<57 { documents.append(document("Collie \(n)", price: Int64(1000 + (n % 7) * 100), published: Double(n % 11),
                                                    at: (51.5 + Double(n % 13) * 0.01, -0.12))) }
        let index = try index(documents)
        for sort in ["newest", "price_asc", "price_desc", "relevance&q=collie", "distance&near=51.5,-0.12&radiusKm=100"] {
            var seen: [UUID] = []
            var cursor: String? = nil
            repeat {
                let text = "sort=\(sort)&limit=10" + (cursor.map { "&cursor=\($0)" } ?? "")
                let parsed = try query(text)
                let answer = index.search(parsed)
                seen += answer.hits.map(\.document.id)
                cursor = answer.hasMore ? answer.hits.last.map { $0.cursor.encoded(binding: parsed.binding) } : nil
            } while cursor != nil && seen.count < 200
            #expect(seen.count == 57, "\(sort)")
            #expect(Set(seen).count == 57, "\(sort)")
        }
        let cheapest = index.search(try query("sort=price_asc&limit=3")).hits.map(\.document.priceAmount)
        #expect(cheapest == [1000, 1000, 1000])
        let dearest = index.search(try query("sort=price_desc&limit=1")).hits.map(\.document.priceAmount)
        #expect(dearest == [1600])
    }

    /// A browse answers from maintained counts; the full scan is its oracle, through inserts,
    /// edits that move listings between categories and values, and removals.
    @Test func aBrowseAnswersExactlyWhatTheFullScanAnswers() throws {
        var generator = SystemRandomNumberGenerator()
        var index = try index([])
        var documents: [SearchDocument] = []
        let breeds = ["Collie", "Labrador", "Pug"], sexes = ["male", "female"]
        func randomDocument(_ id: UUID? = nil) -> SearchDocument {
            let dog = Int.random(in: 0..<3, using: &generator) > 0
            var document = dog
                ? document("Dog", attributes: #"{"breed":"\#(breeds.randomElement()!)","sex":"\#(sexes.randomElement()!)","birthDate":"2026-01-01"}"#,
                           price: Int64.random(in: 1...50, using: &generator) * 100, published: Double.random(in: 0...100, using: &generator).rounded())
                : document("Kibble", category: Bool.random() ? TestCategories.food : TestCategories.supplies,
                           attributes: #"{"condition":"new","suitableFor":["dogs"]}"#, price: Int64.random(in: 1...50, using: &generator) * 100)
            if let id { document.id = id }
            return document
        }
        for round in 0..<300 {
            switch round % 5 {
            case 0, 1, 2:
                let document = randomDocument()
                documents.append(document)
                index.upsert(document)
            case 3 where !documents.isEmpty:
                let position = Int.random(in: 0..<documents.count, using: &generator)
                documents[position] = randomDocument(documents[position].id)
                index.upsert(documents[position])
            default:
                if let removed = documents.popLast() { index.remove(removed.id) }
            }
        }
        for text in ["", "category=dogs&facets=category,attr.breed,attr.sex", "category=pet-supplies&facets=category,attr.suitableFor&sort=price_asc",
                     "facets=category,attr.sex&sort=price_desc&limit=7", "category=pet-food&sort=newest&limit=3"] {
            var cursor: String? = nil
            repeat {
                let parsed = try query(text + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(SearchIndex.isBrowse(parsed), "\(text)")
                let fast = index.browse(parsed), full = index.scan(parsed)
                #expect(fast.total == full.total, "\(text)")
                #expect(fast.hits.map(\.document.id) == full.hits.map(\.document.id), "\(text)")
                #expect(fast.hasMore == full.hasMore)
                for (name, counts) in full.facets {
                    #expect(fast.facets[name]?.map { "\($0.value)=\($0.count)" } == counts.map { "\($0.value)=\($0.count)" }, "\(text) \(name)")
                }
                cursor = fast.hasMore ? fast.hits.last.map { $0.cursor.encoded(binding: parsed.binding) } : nil
            } while cursor != nil
        }
        #expect(index.search(try query("")).total == documents.count)
    }

    @Test func aChangedOrRemovedListingIsFoundOnlyAsItNowIs() throws {
        var first = document("Border collie", published: 1)
        var index = try index([first, document("Labrador", attributes: #"{"breed":"Labrador","sex":"male","birthDate":"2026-05-01"}"#, published: 2)])
        first.title = "Spaniel"
        first.attributesJSON = #"{"breed":"Spaniel","sex":"male","birthDate":"2026-05-01"}"#
        index.upsert(first)
        #expect(try titles(index, "q=collie").isEmpty)
        #expect(try titles(index, "q=spaniel") == ["Spaniel"])
        #expect(try titles(index, "attr.breed=border%20collie").isEmpty)
        let facets = index.search(try query("facets=attr.sex")).facets["attr.sex"]
        #expect(facets?.map { "\($0.value)=\($0.count)" } == ["male=2"])
        index.remove(first.id)
        #expect(try titles(index, "q=spaniel").isEmpty)
        #expect(index.search(try query("")).total == 1)
        let compacted = index.compacted()
        #expect(try titles(compacted, "") == ["Labrador"])
        #expect(compacted.listings(of: Self.vendorA).count == 1)
    }
}
