import Foundation
import Platform

/// A listing's editable fields as a client sends them: every member optional, so one 422 can
/// name every problem at once.
struct ListingInput: Decodable, Sendable {
    struct PriceInput: Decodable, Sendable {
        var amount: Int64?
        var currency: String?
    }
    struct LocationInput: Decodable, Sendable {
        var lat: Double?
        var lon: Double?
        var city: String?
        var region: String?
        var country: String?
    }
    struct MediaInput: Decodable, Sendable {
        var url: String?
        var alt: String?
    }

    var category: String?
    var title: String?
    var description: String?
    var attributes: JSONValue?
    var price: PriceInput?
    var quantity: Int?
    var location: LocationInput?
    var media: [MediaInput]?
}

/// A listing's editable fields, validated.
struct ListingContent: Sendable, Equatable {
    static let titleLength = 3...120
    static let descriptionLength = 1...5000
    static let quantityRange = 0...10_000
    static let maximumMedia = 12

    var category: Category
    var title: String
    var description: String
    var attributes: JSONValue
    var price: Money
    var quantity: Int
    var location: Location
    var media: [Media]

    static func == (a: ListingContent, b: ListingContent) -> Bool {
        a.category.id == b.category.id && a.title == b.title && a.description == b.description && a.attributes == b.attributes
            && a.price == b.price && a.quantity == b.quantity && a.location == b.location && a.media == b.media
    }

    /// Every field checked, the attributes against the category's schema; a 422 names each bad one.
    static func validate(_ input: ListingInput, categories: CategoryTree) throws -> ListingContent {
        var v = Validator()
        let slug = v.text(input.category, "category", length: 1...80)
        let category = slug.flatMap { categories.category(slug: $0) }
        if slug != nil, category == nil { v.add("category", "is not a category; see GET /v1/categories") }
        let title = v.text(input.title, "title", length: titleLength)
        let description = v.text(input.description, "description", length: descriptionLength, multiline: true)
        var attributes: JSONValue?
        switch input.attributes {
        case nil, .null?: v.add("attributes", "is required")
        case .object?:
            attributes = input.attributes
            if let category, let schema = categories.schemas[category.id], let value = input.attributes {
                v.add(contentsOf: schema.validate(value, at: "attributes"))
            }
        default: v.add("attributes", "must be an object")
        }
        let price = v.money(amount: input.price?.amount, currency: input.price?.currency, "price", positive: true)
        let quantity = v.integer(input.quantity, "quantity", range: quantityRange)
        let location: Location? = v.nested("location") { v in
            guard let input = input.location else {
                v.add("", "is required")
                return nil
            }
            let point = v.coordinates(lat: input.lat, lon: input.lon, field: "")
            let city = v.text(input.city, "city", length: 1...80)
            let region = v.text(input.region, "region", required: false, length: 1...80)
            let country = v.countryCode(input.country, "country")
            guard let point, let city, let country else { return nil }
            return Location(lat: point.lat, lon: point.lon, city: city, region: region, country: country)
        }
        var media: [Media] = []
        if let items = input.media {
            if items.count > maximumMedia { v.add("media", "must have at most \(maximumMedia) items") }
            for (index, item) in items.prefix(maximumMedia).enumerated() {
                v.nested("media", index) { v in
                    let url = v.url(item.url, "url", schemes: ["https"])
                    let alt = v.text(item.alt, "alt", required: false, length: 1...200)
                    if let url { media.append(Media(url: url.absoluteString, alt: alt)) }
                }
            }
        }
        try v.check()
        guard let category, let title, let description, let attributes, let price, let quantity, let location else {
            throw Problem.validation([FieldError("body", "is incomplete")])
        }
        return ListingContent(category: category, title: title, description: description, attributes: attributes,
                              price: price, quantity: quantity, location: location, media: media)
    }

    /// The editable fields of a stored listing, as the JSON a merge patch applies to.
    static func editable(_ record: ListingRecord) -> JSONValue {
        var location: [String: JSONValue] = [
            "lat": .number(record.location.lat), "lon": .number(record.location.lon),
            "city": .string(record.location.city), "country": .string(record.location.country),
        ]
        if let region = record.location.region { location["region"] = .string(region) }
        return .object([
            "category": .string(record.categorySlug),
            "title": .string(record.title),
            "description": .string(record.description),
            "attributes": record.attributes,
            "price": .object(["amount": .number(Double(record.price.amount)), "currency": .string(record.price.currency.code)]),
            "quantity": .number(Double(record.quantity)),
            "location": .object(location),
            "media": .array(record.media.map { item in
                var object: [String: JSONValue] = ["url": .string(item.url)]
                if let alt = item.alt { object["alt"] = .string(alt) }
                return .object(object)
            }),
        ])
    }

    /// Whether buyers would see a different listing: what review looks at (price and stock are not).
    func isMaterialChange(from record: ListingRecord) -> Bool {
        category.id != record.categoryId || title != record.title || description != record.description
            || attributes != record.attributes || media != record.media
    }
}
