import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// The review endpoints: the parties write (and read, double blind) an order's reviews; the
/// reviewed vendor replies once; the desk removes; anyone reads a vendor's published reviews.
struct ReviewsController: Sendable {
    let client: PostgresClient
    let workflow: ReviewWorkflow
    let bodyLimit: Int

    private struct WriteBody: Decodable {
        var rating: Int?
        var text: String?
    }

    private struct TextBody: Decodable {
        var text: String?
    }

    private struct ReasonBody: Decodable {
        var reason: String?
    }

    private struct OrderReviews: Encodable, Sendable {
        var items: [ReviewView]
    }

    func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.post("/v1/orders/{id}/reviews") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let orderId = try context.uuidParameter(notFound: OrdersError.orderNotFound)
            let body = try await JSONBody.decode(WriteBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let rating = v.integer(body.rating, "rating", range: 1...5)
            let text = v.text(body.text, "text", length: 1...2000, multiline: true)
            try v.check()
            guard let rating, let text else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in
                try await workflow.write(order: orderId, rating: rating, text: text, by: caller, in: tx)
            }
            return try JSONResponse.versioned(view, version: view.version, status: .created, cacheControl: "private, no-store")
        }
        signedIn.get("/v1/orders/{id}/reviews") { _, context -> Response in
            let caller = try context.requirePrincipal()
            let orderId = try context.uuidParameter(notFound: OrdersError.orderNotFound)
            let items = try await Database.transaction(client, context.operation) { tx in try await workflow.ofOrder(orderId, by: caller, in: tx) }
            return try JSONResponse.make(OrderReviews(items: items), cacheControl: "private, no-store")
        }
        signedIn.post("/v1/reviews/{id}/reply") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try reviewId(context)
            let body = try await JSONBody.decode(TextBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let text = v.text(body.text, "text", length: 1...2000, multiline: true)
            try v.check()
            guard let text else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in try await workflow.reply(to: id, text: text, by: caller, in: tx) }
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }

        let desk = router.group("/v1/moderation/reviews").add(middleware: RequireRole(.moderator, .admin))
        desk.post("/{id}/remove") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try reviewId(context)
            let body = try await JSONBody.decode(ReasonBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let reason = v.text(body.reason, "reason", length: 3...1000, multiline: true)
            try v.check()
            guard let reason else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in try await workflow.remove(id, reason: reason, by: caller, in: tx) }
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }

        // Public: a vendor's published reviews, newest first, with the average and count.
        router.get("/v1/vendors/{id}/reviews") { request, context -> Response in
            let vendor = try context.uuidParameter(notFound: ReviewsError.vendorNotFound)
            let page = try KeysetPageRequest(request, order: ReviewRepository.newestFirst, binding: ReviewRepository.binding(vendor))
            let found = try await Database.transaction(client, context.operation) { tx in try await workflow.vendorReviews(vendor, page, in: tx) }
            return try JSONResponse.cacheable(found, request: request)
        }
    }

    private func reviewId(_ context: AppRequestContext) throws -> UUID {
        try context.uuidParameter(notFound: ReviewsError.reviewNotFound)
    }
}
