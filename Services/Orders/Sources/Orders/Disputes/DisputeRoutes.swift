import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// The dispute endpoints: the buyer opens one on a delivered order; the parties (and the desk)
/// read it and add evidence; the buyer withdraws; the desk works the queue and decides.
struct DisputesController: Sendable {
    let client: PostgresClient
    let workflow: DisputeWorkflow
    let bodyLimit: Int

    private struct OpenBody: Decodable {
        var reason: String?
        var description: String?
    }

    private struct EvidenceBody: Decodable {
        var text: String?
        var attachments: [String]?
    }

    private struct AmountBody: Decodable {
        var amount: Int64?
        var currency: String?
    }

    private struct ResolveBody: Decodable {
        var outcome: String?
        var refundAmount: AmountBody?
        var note: String?
    }

    /// The most attachment links one piece of evidence carries.
    static let maximumAttachments = 10

    func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.post("/v1/orders/{id}/disputes") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let orderId = try context.uuidParameter(notFound: OrdersError.orderNotFound)
            let body = try await JSONBody.decode(OpenBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let reason = v.oneOf(body.reason, "reason", as: DisputeReason.self)
            let description = v.text(body.description, "description", length: 1...5000, multiline: true)
            try v.check()
            guard let reason, let description else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in
                try await workflow.open(order: orderId, reason: reason, description: description, by: caller, in: tx)
            }
            return try JSONResponse.versioned(view, version: view.version, status: .created, cacheControl: "private, no-store",
                                              headers: [.location: "/v1/disputes/\(view.id.lowercased)"])
        }
        signedIn.get("/v1/disputes/{id}") { _, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try disputeId(context)
            let view = try await Database.transaction(client, context.operation) { tx in try await workflow.read(id, by: caller, in: tx) }
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }
        signedIn.post("/v1/disputes/{id}/evidence") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try disputeId(context)
            let body = try await JSONBody.decode(EvidenceBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let text = v.text(body.text, "text", length: 1...5000, multiline: true)
            let links = body.attachments ?? []
            v.require(links.count <= Self.maximumAttachments, "attachments", "must hold at most \(Self.maximumAttachments) links")
            let attachments = links.enumerated().compactMap { index, link in
                v.url(link, "attachments[\(index)]", schemes: ["https"])?.absoluteString
            }
            try v.check()
            guard let text else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in
                try await workflow.addEvidence(EvidenceInput(text: text, attachments: attachments), to: id, by: caller, in: tx)
            }
            return try JSONResponse.versioned(view, version: view.version, status: .created, cacheControl: "private, no-store")
        }
        signedIn.post("/v1/disputes/{id}/withdraw") { _, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try disputeId(context)
            let view = try await Database.transaction(client, context.operation) { tx in try await workflow.withdraw(id, by: caller, in: tx) }
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }

        let desk = router.group("/v1/moderation/disputes").add(middleware: RequireRole(.moderator, .admin))
        desk.get { request, context -> Response in
            var v = Validator()
            let status = v.oneOf(request.queryString("status"), "status", as: DisputeStatus.self, required: false) ?? .open
            try v.check()
            let page = try KeysetPageRequest(request, order: DisputeRepository.oldestFirst, binding: DisputeRepository.binding(status))
            let found = try await Database.transaction(client, context.operation) { tx in try await workflow.disputes.page(status, page, in: tx) }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        desk.post("/{id}/resolve") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try disputeId(context)
            let body = try await JSONBody.decode(ResolveBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let outcome = v.oneOf(body.outcome, "outcome", as: DisputeOutcome.self)
            let refund = v.money(amount: body.refundAmount?.amount, currency: body.refundAmount?.currency, "refundAmount", required: false, positive: true)
            let note = v.text(body.note, "note", length: 1...2000, multiline: true)
            try v.check()
            guard let outcome, let note else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in
                try await workflow.resolve(id, outcome: outcome, refund: refund, note: note, by: caller, in: tx)
            }
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }
    }

    private func disputeId(_ context: AppRequestContext) throws -> UUID {
        try context.uuidParameter(notFound: DisputesError.disputeNotFound)
    }
}
