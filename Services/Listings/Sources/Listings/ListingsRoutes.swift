import Foundation
import Hummingbird
import Platform

/// The listing endpoints: each parses, authorizes through `ListingPolicy` (inside the workflow),
/// calls the workflow, and answers the listing as it now is.
struct ListingsController: Sendable {
    let workflow: ListingWorkflow
    let repository: ListingRepository
    let readModel: SearchReadModel
    let bodyLimit: Int

    /// Public answers may be kept briefly by clients and CDNs; a change is visible here at once.
    static let publicCacheControl = "public, max-age=1"

    func addRoutes(to router: ServiceRouter) {
        router.get("/v1/listings") { request, context -> Response in
            try await search(request, context)
        }
        router.get("/v1/listings/{id}") { request, context -> Response in
            let id = try listingId(context)
            let caller = context.principal
            // Strangers share one cached answer per listing; owners and staff read the row.
            let generation = readModel.currentGeneration
            let key = "listing:" + id.uuidString
            if caller == nil, let answer = readModel.cache.answer(key, generation: generation) {
                return JSONResponse.cacheable(encoded: answer.body, etag: answer.etag, request: request, cacheControl: Self.publicCacheControl)
            }
            guard let record = try await repository.find(id, context.operation) else { throw ListingsError.listingNotFound }
            try ListingPolicy.authorize(.read, status: record.status, hidden: record.isHidden, vendorId: record.vendorId, by: caller)
            let privileged = caller.map { $0.isStaff || $0.userId == record.vendorId } ?? false
            let view = ListingView(record, privileged: privileged)
            if privileged { return try JSONResponse.versioned(view, version: record.version, cacheControl: "private, no-store") }
            let body = try JSONWriter.encode(view)
            let etag = Versioning.etag(of: body)
            if caller == nil { readModel.cache.store(key, .init(body: body, etag: etag, generation: generation)) }
            return JSONResponse.cacheable(encoded: body, etag: etag, request: request, cacheControl: Self.publicCacheControl)
        }

        let vendors = router.group().add(middleware: RequireRole(.vendor))
        vendors.post("/v1/listings") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let input = try await JSONBody.decode(ListingInput.self, from: request, limit: bodyLimit)
            let record = try await workflow.create(input, by: caller, context.operation)
            return try JSONResponse.versioned(ListingView(record, privileged: true), version: record.version, status: .created,
                                              headers: [.location: "/v1/listings/\(record.id.uuidString.lowercased())"])
        }
        vendors.patch("/v1/listings/{id}") { request, context -> Response in
            let id = try listingId(context)
            let precondition = try Versioning.required(request)
            let patch = try JSONBody.decode(JSONValue.self, from: try await JSONBody.collect(from: request, limit: bodyLimit))
            guard case .object = patch else { throw Problem.validation([FieldError("body", "must be a JSON object (a merge patch)")]) }
            let record = try await workflow.edit(id, patch: patch, precondition: precondition, by: try context.requirePrincipal(), context.operation)
            return try JSONResponse.versioned(ListingView(record, privileged: true), version: record.version)
        }
        vendors.post("/v1/listings/{id}/publish") { request, context -> Response in
            let record = try await workflow.publish(try listingId(context), precondition: Versioning.precondition(request),
                                                    by: try context.requirePrincipal(), context.operation)
            return try JSONResponse.versioned(ListingView(record, privileged: true), version: record.version)
        }
        vendors.post("/v1/listings/{id}/close") { request, context -> Response in
            let record = try await workflow.close(try listingId(context), precondition: Versioning.precondition(request),
                                                  by: try context.requirePrincipal(), context.operation)
            return try JSONResponse.versioned(ListingView(record, privileged: true), version: record.version)
        }
        vendors.delete("/v1/listings/{id}") { request, context -> Response in
            try await workflow.delete(try listingId(context), precondition: Versioning.precondition(request),
                                      by: try context.requirePrincipal(), context.operation)
            return Response(status: .noContent)
        }
        vendors.get("/v1/vendor/listings") { request, context -> Response in
            let caller = try context.requirePrincipal()
            var v = Validator()
            let status = request.queryString("status").flatMap { v.oneOf($0, "status", as: ListingStatus.self) }
            try v.check()
            let binding = KeysetCursor.binding("listings.vendor", sort: "newest", filters: status.map { [("status", $0.rawValue)] } ?? [])
            let page = try await repository.vendorPage(vendor: caller.userId, status: status,
                                                       KeysetPageRequest(request, order: ListingRepository.newestFirst, binding: binding),
                                                       context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }

        let moderation = router.group("/v1/moderation").add(middleware: RequireRole(.moderator, .admin))
        moderation.get("/listings") { request, context -> Response in
            var v = Validator()
            if let status = request.queryString("status"), status != ListingStatus.pendingReview.rawValue {
                v.add("status", "must be pending_review (the review queue)")
            }
            try v.check()
            let page = try await repository.reviewQueue(
                KeysetPageRequest(request, order: ListingRepository.oldestSubmittedFirst,
                                  binding: KeysetCursor.binding("listings.review", sort: "oldest")), context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
        for decision in [ListingWorkflow.Decision.approve, .reject, .remove] {
            let action = switch decision {
            case .approve: "approve"
            case .reject: "reject"
            case .remove: "remove"
            }
            moderation.post("/listings/{id}/\(action)") { request, context -> Response in
                let id = try listingId(context)
                let reason = try await decisionReason(request, required: decision != .approve)
                let record = try await workflow.decide(decision, id, reason: reason, by: try context.requirePrincipal(), context.operation)
                return try JSONResponse.versioned(ListingView(record, privileged: true), version: record.version)
            }
        }
    }

    private struct DecisionBody: Decodable {
        var reason: String?
    }

    /// The reason the vendor is told: required to reject or remove, optional to approve.
    private func decisionReason(_ request: Request, required: Bool) async throws -> String? {
        let data = try await JSONBody.collect(from: request, limit: bodyLimit)
        let body = data.isEmpty ? DecisionBody() : try JSONBody.decode(DecisionBody.self, from: data)
        var v = Validator()
        let reason = v.text(body.reason, "reason", required: required, length: 3...1000, multiline: true)
        try v.check()
        return reason
    }

    private func listingId(_ context: AppRequestContext) throws -> UUID {
        try context.uuidParameter(notFound: ListingsError.listingNotFound)
    }

    // MARK: Search

    private func search(_ request: Request, _ context: AppRequestContext) async throws -> Response {
        let parameters = SearchQuery.parameters(rawQuery: request.uri.query ?? "")
        let key = "search:" + parameters.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { $0.0 + "=" + $0.1 }.joined(separator: "&")
        let generation = readModel.currentGeneration
        if let answer = readModel.cache.answer(key, generation: generation) {
            return JSONResponse.cacheable(encoded: answer.body, etag: answer.etag, request: request, cacheControl: Self.publicCacheControl)
        }
        let query = try SearchQuery.parse(parameters, categories: try await workflow.categories.tree(context.operation))
        guard let (result, computedAt) = readModel.search(query) else {
            throw Problem(.serviceUnavailable, "Search is starting; retry in a moment.", headers: [.retryAfter: "1"])
        }
        let page = try SearchPage(result, query: query)
        let body = try page.encoded()
        let etag = Versioning.etag(of: body)
        readModel.cache.store(key, .init(body: body, etag: etag, generation: computedAt))
        return JSONResponse.cacheable(encoded: body, etag: etag, request: request, cacheControl: Self.publicCacheControl)
    }
}

/// `GET /v1/listings`'s answer.
struct SearchPage: Encodable, Sendable {
    struct Item: Encodable, Sendable {
        struct Place: Encodable, Sendable {
            var city: String
            var country: String
        }
        struct Vendor: Encodable, Sendable {
            var id: UUID
            var displayName: String
            var rating: Double?
        }
        var id: UUID
        var title: String
        var price: Money
        var category: String
        var attributes: EncodedJSON
        var location: Place
        var distanceKm: Double?
        var vendor: Vendor
        var image: String?
        var publishedAt: Date
    }
    struct FacetCount: Encodable, Sendable {
        var value: String
        var count: Int
    }

    var items: [Item]
    var facets: [String: [FacetCount]]
    var totalEstimate: Int
    var nextCursor: String?

    init(_ result: SearchResult, query: SearchQuery) throws {
        items = try result.hits.map { hit in
            Item(id: hit.document.id, title: hit.document.title,
                 price: try Money(amount: hit.document.priceAmount, currencyCode: hit.document.currency), category: hit.category,
                 attributes: hit.document.attributes,
                 location: .init(city: hit.document.city, country: hit.document.country), distanceKm: hit.distanceKm,
                 vendor: .init(id: hit.vendorId, displayName: hit.vendor.displayName, rating: hit.vendor.rating),
                 image: hit.document.image, publishedAt: hit.document.publishedAt)
        }
        facets = result.facets.mapValues { $0.map { FacetCount(value: $0.value, count: $0.count) } }
        totalEstimate = result.total
        nextCursor = result.hasMore ? result.hits.last.map { $0.cursor.encoded(binding: query.binding) } : nil
    }
}

extension SearchPage {
    /// The page's JSON, the same bytes as `JSONWriter.encode(self)` (a test holds them equal),
    /// written directly: through `Encodable`, a hundred hits cost more than finding them.
    func encoded() throws -> [UInt8] {
        var json = JSONStream(capacity: 256 + items.count * 640)
        json.raw(#"{"facets":"#)
        try json.value(facets)
        json.raw(#","items":["#)
        for (index, item) in items.enumerated() {
            if index > 0 { json.raw(",") }
            try item.write(to: &json)
        }
        json.raw(#"],"nextCursor":"#)
        if let nextCursor { json.string(nextCursor) } else { json.null() }
        json.raw(#","totalEstimate":"#)
        json.int(Int64(totalEstimate))
        json.raw("}")
        return json.bytes
    }
}

extension SearchPage.Item {
    /// Keys in byte order, as `JSONWriter` sorts them.
    fileprivate func write(to json: inout JSONStream) throws {
        json.raw(#"{"attributes":"#)
        json.encoded(attributes)
        json.raw(#","category":"#)
        json.string(category)
        json.raw(#","distanceKm":"#)
        if let distanceKm { try json.double(distanceKm) } else { json.null() }
        json.raw(#","id":"#)
        json.string(id)
        json.raw(#","image":"#)
        if let image { json.string(image) } else { json.null() }
        json.raw(#","location":{"city":"#)
        json.string(location.city)
        json.raw(#","country":"#)
        json.string(location.country)
        json.raw(#"},"price":{"amount":"#)
        json.int(price.amount)
        json.raw(#","currency":"#)
        json.string(price.currency.code)
        json.raw(#"},"publishedAt":"#)
        json.date(publishedAt)
        json.raw(#","title":"#)
        json.string(title)
        json.raw(#","vendor":{"displayName":"#)
        json.string(vendor.displayName)
        json.raw(#","id":"#)
        json.string(vendor.id)
        json.raw(#","rating":"#)
        if let rating = vendor.rating { try json.double(rating) } else { json.null() }
        json.raw("}}")
    }
}
