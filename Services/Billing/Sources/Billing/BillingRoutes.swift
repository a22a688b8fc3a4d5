import Foundation
import HTTPTypes
import Hummingbird
import Platform

/// The billing endpoints: each parses, authorizes through `BillingPolicy` (inside `Subscriptions`),
/// calls the domain, and answers.
struct BillingController: Sendable {
    let plans: PlanRepository
    let subscriptions: Subscriptions
    let webhooks: WebhookIngestion
    let bodyLimit: Int
    static let stripeSignature = HTTPField.Name("Stripe-Signature")!
    static let sandboxSignature = HTTPField.Name("Sandbox-Signature")!

    private struct CreateBody: Decodable {
        var plan: String?
        var paymentMethod: String?
    }

    private struct CancelBody: Decodable {
        var atPeriodEnd: Bool?
        var reason: String?
    }

    private struct PauseBody: Decodable {
        var resumeAt: String?
    }

    private struct PlanBody: Decodable {
        var plan: String?
    }

    private struct PaymentMethodBody: Decodable {
        var paymentMethod: String?
    }

    private struct CompBody: Decodable {
        var days: Int?
        var reason: String?
    }

    func addRoutes(to router: ServiceRouter) {
        router.get("/v1/plans") { request, context -> Response in
            try JSONResponse.cacheable(Page(items: try await plans.active(context.operation), nextCursor: nil), request: request)
        }

        // Vendors.
        let vendors = router.group().add(middleware: RequireRole(.vendor))
        vendors.post("/v1/subscriptions") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let key = try Idempotency.key(of: request)
            let (body, fingerprint) = try await request.idempotentBody(CreateBody.self, limit: bodyLimit)
            var v = Validator()
            let planReference = v.text(body.plan, "plan", length: 1...100)
            let methodName = v.text(body.paymentMethod, "paymentMethod", length: 1...255)
            try v.check()
            guard let planReference, let methodName else { throw Problem.validation([]) }
            guard let plan = try await plans.onSale(planReference, context: context.operation) else {
                throw Problem.validation([FieldError("plan", "is not a plan on sale (see GET /v1/plans)")])
            }
            // The provider first, outside the transaction; its idempotency keys make a replay harmless.
            let customer = try await subscriptions.customer(for: caller.userId, context: context.operation)
            let method = try await subscriptions.attach(methodName, customer: customer, key: "attach:\(caller.userId.lowercased):\(key)")
            return try await Idempotency.run(caller: caller.userId, key: key, fingerprint: fingerprint, client: subscriptions.client,
                                             context: context.operation) { tx in
                let created = try await subscriptions.workflow.subscribe(vendor: caller.userId, plan: plan, customer: customer,
                                                                         paymentMethod: method, in: tx)
                let view = try await subscriptions.views([created], history: false, in: tx)[0]
                return try StoredResponse.json(view, status: .created, headers: [
                    "Location": "/v1/subscriptions/\(created.id.lowercased)", "ETag": Versioning.etag(created.version)])
            }
        }
        vendors.get("/v1/vendor/subscription") { request, context -> Response in
            let view = try await subscriptions.current(vendor: try context.requirePrincipal().userId, context: context.operation)
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }

        // The owner or an admin; the policy decides per action.
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.get("/v1/subscriptions/{id}") { request, context -> Response in
            let view = try await subscriptions.subscription(try subscriptionId(context), by: try context.requirePrincipal(), context: context.operation)
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }
        signedIn.post("/v1/subscriptions/{id}/cancel") { request, context -> Response in
            let body = try await optionalBody(CancelBody.self, request) ?? CancelBody()
            var v = Validator()
            let reason = v.text(body.reason, "reason", required: false, length: 1...1000, multiline: true)
            try v.check()
            return try await act(.cancel(atPeriodEnd: body.atPeriodEnd ?? true), request, context, note: reason)
        }
        signedIn.post("/v1/subscriptions/{id}/resume") { request, context -> Response in
            try await act(.resume, request, context)
        }
        signedIn.post("/v1/subscriptions/{id}/pause") { request, context -> Response in
            let body = try await optionalBody(PauseBody.self, request) ?? PauseBody()
            var v = Validator()
            let resumeAt = v.time(body.resumeAt, "resumeAt", required: false)
            try v.check()
            return try await act(.pause(resumeAt: resumeAt), request, context)
        }
        signedIn.post("/v1/subscriptions/{id}/change-plan") { request, context -> Response in
            let body = try await JSONBody.decode(PlanBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let reference = v.text(body.plan, "plan", length: 1...100)
            try v.check()
            guard let reference, let plan = try await plans.onSale(reference, context: context.operation) else {
                throw Problem.validation([FieldError("plan", "is not a plan on sale (see GET /v1/plans)")])
            }
            return try await act(.changePlan(plan), request, context)
        }
        signedIn.put("/v1/subscriptions/{id}/payment-method") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try subscriptionId(context)
            let body = try await JSONBody.decode(PaymentMethodBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let name = v.text(body.paymentMethod, "paymentMethod", length: 1...255)
            try v.check()
            guard let name else { throw Problem.validation([]) }
            // Only the owner changes a card: checked before the provider is asked to save one.
            let current = try await subscriptions.subscription(id, by: caller, context: context.operation)
            try BillingPolicy.authorize(.manage, vendorId: current.vendorId, by: caller)
            let customer = try await subscriptions.customer(for: caller.userId, context: context.operation)
            let method = try await subscriptions.attach(name, customer: customer,
                                                        key: "attach:\(caller.userId.lowercased):\(id.lowercased):\(name):\(current.version)")
            return try await act(.paymentMethod(method), request, context)
        }

        // Invoices: the owner's, or any for an admin.
        signedIn.get("/v1/invoices") { request, context -> Response in
            let caller = try context.requirePrincipal()
            var v = Validator()
            let status = request.queryString("status").flatMap { v.oneOf($0, "status", as: InvoiceStatus.self) }
            let vendorFilter = request.queryString("vendorId").flatMap { v.uuid($0, "vendorId") }
            try v.check()
            let admin = caller.has(.admin)
            guard admin || caller.has(.vendor) else { throw Problem(.forbidden, "Only vendors and administrators have invoices to read.") }
            let vendor = admin ? vendorFilter : caller.userId
            let binding = KeysetCursor.binding("billing.invoices", sort: "newest",
                                               filters: [("vendor", vendor?.lowercased ?? ""), ("status", status?.rawValue ?? "")])
            let page = try await Database.transaction(subscriptions.client, context.operation) { tx in
                if admin { try await StaffReads.record(caller, read: "invoices", id: vendor, in: tx) }
                return try await subscriptions.workflow.invoices.page(
                    vendor: vendor, status: status?.rawValue,
                    try KeysetPageRequest(request, order: InvoiceRepository.newestFirst, binding: binding), in: tx)
            }
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
        signedIn.get("/v1/invoices/{id}") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: BillingError.invoiceNotFound)
            let invoice = try await Database.transaction(subscriptions.client, context.operation) { tx in
                guard let invoice = try await subscriptions.workflow.invoices.load(id, in: tx) else { throw BillingError.invoiceNotFound }
                do {
                    try BillingPolicy.authorize(.read, vendorId: invoice.vendorId, by: caller)
                } catch BillingError.subscriptionNotFound {
                    throw BillingError.invoiceNotFound
                }
                if caller.userId != invoice.vendorId { try await StaffReads.record(caller, read: "invoice", id: id, in: tx) }
                return invoice
            }
            return try JSONResponse.make(invoice, cacheControl: "private, no-store")
        }

        // The provider's webhooks: public, signed. The other provider's path answers 404.
        for (provider, header) in [("sandbox", Self.sandboxSignature), ("stripe", Self.stripeSignature)] {
            router.post("/v1/webhooks/\(provider)") { request, context -> Response in
                guard provider == webhooks.provider.name else { throw BillingError.webhookProviderUnknown }
                let body = try await JSONBody.collect(from: request, limit: WebhookIngestion.maximumBodyBytes)
                let receipt = try await webhooks.receive(body: Array(body), signature: request.headers[header], context: context.operation)
                return try JSONResponse.make(receipt, cacheControl: "no-store")
            }
        }

        // Administration.
        let admin = router.group("/v1/admin").add(middleware: RequireRole(.admin))
        admin.get("/subscriptions") { request, context -> Response in
            var v = Validator()
            let status = request.queryString("status").flatMap { v.oneOf($0, "status", as: SubscriptionStatus.self) }
            let vendor = request.queryString("vendorId").flatMap { v.uuid($0, "vendorId") }
            try v.check()
            let binding = KeysetCursor.binding("billing.subscriptions", sort: "newest",
                                               filters: [("vendor", vendor?.lowercased ?? ""), ("status", status?.rawValue ?? "")])
            let page = try await subscriptions.page(vendor: vendor, status: status,
                                                    try KeysetPageRequest(request, order: Subscriptions.newestFirst, binding: binding),
                                                    by: try context.requirePrincipal(), context: context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
        admin.post("/subscriptions/{id}/comp") { request, context -> Response in
            let body = try await JSONBody.decode(CompBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let days = v.integer(body.days, "days", range: 1...366)
            let reason = v.text(body.reason, "reason", length: 3...1000, multiline: true)
            try v.check()
            guard let days, let reason else { throw Problem.validation([]) }
            return try await act(.comp(days: days), request, context, note: reason)
        }
        admin.get("/ledger/trial-balance") { request, context -> Response in
            let balance = try await Database.transaction(subscriptions.client, context.operation) { tx in
                try await subscriptions.workflow.ledger.trialBalance(in: tx)
            }
            return try JSONResponse.make(balance, cacheControl: "private, no-store")
        }
    }

    private func act(_ action: Subscriptions.Action, _ request: Request, _ context: AppRequestContext, note: String? = nil) async throws -> Response {
        let view = try await subscriptions.act(action, on: try subscriptionId(context), precondition: Versioning.precondition(request),
                                               by: try context.requirePrincipal(), note: note, context: context.operation)
        return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
    }

    /// A body that may be left out entirely (`POST …/cancel` with no body cancels at period end).
    private func optionalBody<Body: Decodable>(_ type: Body.Type, _ request: Request) async throws -> Body? {
        let data = try await JSONBody.collect(from: request, limit: bodyLimit)
        return data.isEmpty ? nil : try JSONBody.decode(type, from: data)
    }

    private func subscriptionId(_ context: AppRequestContext) throws -> UUID {
        try context.uuidParameter(notFound: BillingError.subscriptionNotFound)
    }

}
