import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// The order endpoints: each parses, authorizes through `OrderPolicy`, runs one transaction
/// through the workflow, and answers with the order.
struct OrdersController: Sendable {
    let client: PostgresClient
    let workflow: OrderWorkflow
    let bodyLimit: Int
    var orders: OrderRepository { workflow.orders }

    private struct PlaceBody: Decodable {
        var listingId: String?
        var quantity: Int?
        var shippingAddress: AddressBody?
    }

    private struct AddressBody: Decodable {
        var name: String?
        var line1: String?
        var line2: String?
        var city: String?
        var postalCode: String?
        var country: String?
    }

    private struct ReasonBody: Decodable {
        var reason: String?
    }

    private struct ShipBody: Decodable {
        var carrier: String?
        var trackingNumber: String?
    }

    func addRoutes(to router: ServiceRouter) {
        // Buyers (and vendors: a breeder buys supplies too) with a verified email place orders.
        let buyers = router.group().add(middleware: RequireVerifiedEmail()).add(middleware: RequireRole(Role.selfService))
        buyers.post("/v1/orders") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let key = try Idempotency.key(of: request)
            let (body, fingerprint) = try await request.idempotentBody(PlaceBody.self, limit: bodyLimit)
            var v = Validator()
            let listingId = v.uuid(body.listingId, "listingId")
            let quantity = v.integer(body.quantity, "quantity", range: 1...OrderWorkflow.maximumQuantity)
            let address = v.nested("shippingAddress") { v -> ShippingAddress? in
                guard let a = body.shippingAddress else {
                    v.add("", "is required")
                    return nil
                }
                let name = v.text(a.name, "name", length: 1...200)
                let line1 = v.text(a.line1, "line1", length: 1...200)
                let line2 = v.text(a.line2, "line2", required: false, length: 1...200)
                let city = v.text(a.city, "city", length: 1...100)
                let postalCode = v.text(a.postalCode, "postalCode", length: 1...20)
                let country = v.countryCode(a.country, "country")
                guard let name, let line1, let city, let postalCode, let country else { return nil }
                return ShippingAddress(name: name, line1: line1, line2: line2, city: city, postalCode: postalCode, country: country)
            }
            try v.check()
            guard let listingId, let quantity, let address else { throw Problem.validation([]) }
            return try await Idempotency.run(caller: caller.userId, key: key, fingerprint: fingerprint, client: client,
                                             context: context.operation) { tx in
                let order = try await workflow.place(buyer: caller.userId, listingId: listingId, quantity: quantity, address: address, in: tx)
                let view = OrderView(order, history: try await orders.history(of: order.id, in: tx))
                return try StoredResponse.json(view, status: .created, headers: [
                    "Location": "/v1/orders/\(order.id.lowercased)", "ETag": Versioning.etag(order.version)])
            }
        }

        // The order's parties (and staff, to read); the policy decides per action.
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.get("/v1/orders") { request, context -> Response in
            let caller = try context.requirePrincipal()
            var v = Validator()
            let role = v.oneOf(request.uri.queryParameters.get("role"), "role", as: OrderRole.self, required: false)
            let status = v.oneOf(request.uri.queryParameters.get("status"), "status", as: OrderStatus.self, required: false)
            try v.check()
            let page = try KeysetPageRequest(request, order: OrderRepository.newestFirst, binding: OrderRepository.binding)
            let found = try await Database.transaction(client, context.operation) { tx in
                try await orders.page(participant: caller.userId, role: role, status: status, page, in: tx)
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        signedIn.get("/v1/orders/{id}") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try orderId(context)
            let view = try await Database.transaction(client, context.operation) { tx -> OrderView in
                guard let order = try await orders.load(id, in: tx) else { throw OrdersError.orderNotFound }
                if try OrderPolicy.authorize(.read, buyerId: order.buyerId, vendorId: order.vendorId, by: caller) == .staff {
                    try await StaffReads.record(caller, read: "order", id: id, in: tx)
                }
                return OrderView(order, history: try await orders.history(of: id, in: tx))
            }
            return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
        }
        signedIn.post("/v1/orders/{id}/cancel") { request, context -> Response in
            let body = try await optionalBody(ReasonBody.self, request) ?? ReasonBody()
            var v = Validator()
            let reason = v.text(body.reason, "reason", required: false, length: 1...1000, multiline: true)
            try v.check()
            return try await act(.cancel, request, context, input: OrderInput(note: reason))
        }
        signedIn.post("/v1/orders/{id}/ship") { request, context -> Response in
            let body = try await JSONBody.decode(ShipBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let carrier = v.text(body.carrier, "carrier", length: 1...100)
            let tracking = v.text(body.trackingNumber, "trackingNumber", length: 1...100)
            try v.check()
            return try await act(.ship, request, context, input: OrderInput(carrier: carrier, trackingNumber: tracking))
        }
        signedIn.post("/v1/orders/{id}/deliver") { request, context -> Response in
            try await act(.deliver, request, context)
        }
        signedIn.post("/v1/orders/{id}/receive") { request, context -> Response in
            try await act(.receive, request, context)
        }
    }

    /// A party's action on an order, in one transaction: policy, precondition (`If-Match`), transition.
    private func act(_ action: OrderPolicy.Action, _ request: Request, _ context: AppRequestContext,
                     input: OrderInput = OrderInput()) async throws -> Response {
        let caller = try context.requirePrincipal()
        let id = try orderId(context)
        let precondition = Versioning.precondition(request)
        let view = try await Database.transaction(client, context.operation) { tx -> OrderView in
            guard let current = try await orders.lock(id, in: tx) else { throw OrdersError.orderNotFound }
            let party = try OrderPolicy.authorize(action, buyerId: current.buyerId, vendorId: current.vendorId, by: caller)
            try Versioning.check(precondition, current: current.version)
            let event: OrderEvent = switch action {
            case .cancel: party == .vendor ? .cancelByVendor : .cancelByBuyer
            case .ship: .ship
            case .deliver: .deliver
            case .receive: .receive
            case .read: throw OrdersError.orderNotFound
            }
            var input = input
            input.actorId = caller.userId
            let saved = try await workflow.apply(event, to: current, input: input, in: tx)
            return OrderView(saved, history: try await orders.history(of: id, in: tx))
        }
        return try JSONResponse.versioned(view, version: view.version, cacheControl: "private, no-store")
    }

    /// A body that may be left out entirely (`POST …/cancel` without a reason).
    private func optionalBody<Body: Decodable>(_ type: Body.Type, _ request: Request) async throws -> Body? {
        let data = try await JSONBody.collect(from: request, limit: bodyLimit)
        return data.isEmpty ? nil : try JSONBody.decode(type, from: data)
    }

    private func orderId(_ context: AppRequestContext) throws -> UUID {
        try context.uuidParameter(notFound: OrdersError.orderNotFound)
    }
}
