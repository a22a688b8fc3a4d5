import Foundation
import Platform

/// A buyer's search, parsed and checked against the category tree. Every problem with the
/// parameters is one 422 naming each: a typo must never silently widen a search.
struct SearchQuery: Sendable {
    enum Sort: String, CaseIterable, Sendable {
        case relevance, newest
        case priceAsc = "price_asc"
        case priceDesc = "price_desc"
        case distance
    }

    struct AttributeFilter: Sendable {
        var name: String
        /// Equality: any of these (a repeated parameter is an OR), as `SearchIndex.valueKey`s.
        var values: [String]
        /// Ranges for numbers and dates (dates as days since 1970-01-01).
        var minimum: Double?
        var maximum: Double?
    }

    static let maximumRadiusKm = 500.0
    static let defaultRadiusKm = 50.0

    var text: String?
    var categories: Set<UUID>?
    var priceMin: Int64?
    var priceMax: Int64?
    var currency: String?
    var attributes: [AttributeFilter] = []
    var near: (lat: Double, lon: Double)?
    var radiusKm = defaultRadiusKm
    var vendor: UUID?
    var minRating: Double?
    var sort: Sort = .newest
    var facets: [String] = []
    var limit = 20
    var cursor: KeysetCursor?

    /// The sort keys a cursor of this sort carries (before the id).
    var cursorKinds: [SortKeyValue.Kind] {
        switch sort {
        case .relevance, .distance: [.double]
        case .newest: [.time]
        case .priceAsc, .priceDesc: [.int]
        }
    }

    private static let fixedParameters: Set<String> = [
        "q", "category", "priceMin", "priceMax", "currency", "near", "radiusKm", "vendor", "minRating", "sort", "facets", "limit", "cursor",
    ]

    /// The query string's pairs in order, decoded as HTML forms and most clients encode them:
    /// `+` is a space (a literal plus arrives as `%2B`), then percent-escapes.
    static func parameters(rawQuery: String) -> [(String, String)] {
        func decode(_ part: Substring) -> String {
            let spaced = part.replacingOccurrences(of: "+", with: " ")
            return spaced.removingPercentEncoding ?? spaced
        }
        return rawQuery.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// Reads `parameters` (name, value pairs in request order).
    static func parse(_ parameters: [(String, String)], categories tree: CategoryTree) throws -> SearchQuery {
        var query = SearchQuery()
        var v = Validator()
        var single: [String: String] = [:]
        var attributeValues: [String: [String]] = [:]
        var attributeBounds: [String: (min: String?, max: String?)] = [:]
        var bindingFilters: [(name: String, value: String)] = []
        for (name, value) in parameters {
            if name.isEmpty {
                if !value.isEmpty { v.add("query", "has a value without a parameter name") }
                continue
            }
            if name.hasPrefix("attr.") {
                let rest = String(name.dropFirst(5))
                if rest.hasSuffix(".min") {
                    attributeBounds[String(rest.dropLast(4)), default: (nil, nil)].min = value
                } else if rest.hasSuffix(".max") {
                    attributeBounds[String(rest.dropLast(4)), default: (nil, nil)].max = value
                } else {
                    attributeValues[rest, default: []].append(value)
                }
                bindingFilters.append((name, value))
                continue
            }
            guard fixedParameters.contains(name) else {
                v.add(name, "is not a search parameter")
                continue
            }
            guard single[name] == nil else {
                v.add(name, "may be given once")
                continue
            }
            single[name] = value
            if !["cursor", "limit", "facets"].contains(name) { bindingFilters.append((name, value)) }
        }

        if let text = single["q"] {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed.count > 200 { v.add("q", "must be at most 200 characters") }
            else if !trimmed.isEmpty { query.text = trimmed }
        }
        var scope: [Category] = tree.categories
        if let slug = single["category"] {
            if let category = tree.category(slug: slug) {
                let ids = tree.subtree(of: category.id)
                query.categories = ids
                scope = tree.categories.filter { ids.contains($0.id) }
            } else {
                v.add("category", "is not a category; see GET /v1/categories")
            }
        }
        query.priceMin = integer(single["priceMin"], "priceMin", &v)
        query.priceMax = integer(single["priceMax"], "priceMax", &v)
        if let low = query.priceMin, let high = query.priceMax, low > high { v.add("priceMax", "must not be less than priceMin") }
        if let currency = single["currency"] { query.currency = v.currency(currency, "currency")?.code }
        if let near = single["near"] {
            let parts = near.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
            if parts.count == 2, let lat = parts[0], let lon = parts[1], (-90...90).contains(lat), (-180...180).contains(lon) {
                query.near = (lat, lon)
            } else {
                v.add("near", "must be a latitude and longitude, such as 51.5074,-0.1278")
            }
        }
        if let radius = single["radiusKm"] {
            if let km = Double(radius), km.isFinite, km > 0, km <= maximumRadiusKm {
                query.radiusKm = km
            } else {
                v.add("radiusKm", "must be a number above 0 and at most \(Int(maximumRadiusKm))")
            }
            if single["near"] == nil { v.add("radiusKm", "needs near") }
        }
        if let vendor = single["vendor"] { query.vendor = v.uuid(vendor, "vendor") }
        if let rating = single["minRating"] {
            if let value = Double(rating), (1...5).contains(value) { query.minRating = value }
            else { v.add("minRating", "must be a number from 1 to 5") }
        }

        // Attributes: each must be a property of a category in scope, and each value one it can take.
        let properties = Dictionary(scope.flatMap { category in
            (tree.schemas[category.id]?.properties ?? [:]).map { ($0.key, $0.value) }
        }, uniquingKeysWith: { first, _ in first })
        let scopeName = single["category"].map { "category \($0)" } ?? "any category"
        var filters: [String: AttributeFilter] = [:]
        for (name, values) in attributeValues.sorted(by: { $0.key < $1.key }) {
            guard let property = properties[name], property.kind != .object, property.kind != .any else {
                v.add("attr.\(name)", "is not an attribute of \(scopeName)")
                continue
            }
            var keys: [String] = []
            for text in values {
                if let value = property.queryValue(text), let key = SearchIndex.valueKey(value) { keys.append(key) }
                else { v.add("attr.\(name)", "'\(text.prefix(80))' is not a value this attribute takes") }
            }
            filters[name, default: AttributeFilter(name: name, values: [])].values = keys
        }
        for (name, bounds) in attributeBounds.sorted(by: { $0.key < $1.key }) {
            guard let property = properties[name] else {
                v.add("attr.\(name)", "is not an attribute of \(scopeName)")
                continue
            }
            guard property.isOrdered else {
                v.add("attr.\(name)", "takes no range: it is not a number or a date")
                continue
            }
            var filter = filters[name] ?? AttributeFilter(name: name, values: [])
            filter.minimum = bounds.min.flatMap { bound(property.queryValue($0), "attr.\(name).min", &v) }
            filter.maximum = bounds.max.flatMap { bound(property.queryValue($0), "attr.\(name).max", &v) }
            if let low = filter.minimum, let high = filter.maximum, low > high { v.add("attr.\(name).max", "must not be less than the minimum") }
            filters[name] = filter
        }
        query.attributes = filters.values.sorted { $0.name < $1.name }

        if let sort = single["sort"] {
            query.sort = v.oneOf(sort, "sort", as: Sort.self) ?? .newest
            if query.sort == .relevance, query.text == nil { v.add("sort", "relevance needs q") }
            if query.sort == .distance, single["near"] == nil { v.add("sort", "distance needs near") }
        } else {
            query.sort = query.text == nil ? .newest : .relevance
        }
        if let facets = single["facets"] {
            for facet in facets.split(separator: ",").map(String.init) {
                if facet == "category" { query.facets.append(facet); continue }
                let name = facet.hasPrefix("attr.") ? String(facet.dropFirst(5)) : ""
                if scope.contains(where: { $0.facetAttributes.contains(name) }) { query.facets.append(facet) }
                else { v.add("facets", "'\(facet.prefix(80))' is not a facet of \(scopeName)") }
            }
        }
        if let limit = single["limit"] {
            if let value = Int(limit), (1...100).contains(value) { query.limit = value }
            else { v.add("limit", "must be an integer from 1 to 100") }
        }
        try v.check()
        if let cursor = single["cursor"] {
            let binding = KeysetCursor.binding("listings.search", sort: query.sort.rawValue, filters: bindingFilters)
            query.cursor = try KeysetCursor.decode(cursor, binding: binding, kinds: query.cursorKinds)
        }
        query.binding = KeysetCursor.binding("listings.search", sort: query.sort.rawValue, filters: bindingFilters)
        return query
    }

    /// The binding a cursor of this search carries: its sort and every filter.
    var binding = ""

    private static func integer(_ text: String?, _ field: String, _ v: inout Validator) -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text), value >= 0 else {
            v.add(field, "must be a whole number of minor units, 0 or more")
            return nil
        }
        return value
    }

    private static func bound(_ value: JSONValue?, _ field: String, _ v: inout Validator) -> Double? {
        switch value {
        case .number(let number)?: return number
        case .string(let text)?: if let day = SearchIndex.dayNumber(text) { return day }
        default: break
        }
        v.add(field, "must be a number or a date (YYYY-MM-DD) as the attribute is")
        return nil
    }
}
