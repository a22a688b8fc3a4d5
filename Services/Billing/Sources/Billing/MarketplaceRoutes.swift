import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// The marketplace's money endpoints: a buyer confirming an order's payment (sandbox), a
/// vendor's balance, payout account and payouts, an admin's refund.
struct MarketplaceController: Sendable {
    let client: PostgresClient
    let sandbox: SandboxProvider?
    let orderPayments: OrderPayments
    let payouts: Payouts
    let bodyLimit: Int

    private struct ConfirmBody: Decodable {
        var paymentMethod: String?
    }

    private struct AmountBody: Decodable {
        var amount: Int64?
        var currency: String?
    }

    private struct RefundBody: Decodable {
        var orderId: String?
        var amount: AmountBody?
        var reason: String?
    }

    struct ConfirmedPayment: Codable, Sendable, Equatable {
        var id: String
        var orderId: UUID
        var status: String
        var amount: Money
    }

    func addRoutes(to router: ServiceRouter) {
        // What Stripe.js does on a buyer's client, for the sandbox provider only.
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.post("/v1/payments/{intentId}/confirm") { request, context -> Response in
            let caller = try context.requirePrincipal()
            guard let sandbox, let intentId = context.parameters.get("intentId"), Self.isIntentId(intentId) else { throw BillingError.paymentNotFound }
            let body = try await JSONBody.decode(ConfirmBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let method = v.text(body.paymentMethod, "paymentMethod", length: 1...255)
            try v.check()
            guard let method else { throw Problem.validation([]) }
            // Only the order's buyer sees its payment; anyone else is told there is none.
            let orderId = try await Database.transaction(client, context.operation) { tx in
                try await tx.first("""
                    SELECT order_id FROM order_payments WHERE intent_id = \(intentId) AND buyer_id = \(caller.userId)
                    """, as: UUID.self)
            }
            guard let orderId else { throw BillingError.paymentNotFound }
            let intent: ProviderPaymentIntent
            do {
                intent = try await sandbox.confirm(intentId, paymentMethod: method)
            } catch ProviderError.invalidRequest(let message) where message.hasPrefix("No such PaymentMethod") {
                throw BillingError.unknownPaymentMethod(message)
            } catch ProviderError.invalidRequest(let message) {
                throw BillingError.paymentNotConfirmable(message)
            } catch ProviderError.notFound {
                throw BillingError.paymentNotFound
            }
            if intent.status != .succeeded {
                // As Stripe answers a declined confirmation: the intent waits for another card.
                throw BillingError.cardDeclined(code: intent.failureCode ?? "card_declined", message: intent.failureMessage ?? "Your card was declined.")
            }
            return try JSONResponse.make(ConfirmedPayment(id: intent.id, orderId: orderId, status: intent.status.rawValue, amount: intent.amount),
                                         cacheControl: "no-store")
        }

        // Vendors: their money.
        let vendors = router.group("/v1/vendor").add(middleware: RequireRole(.vendor))
        vendors.get("/balance") { request, context -> Response in
            let vendor = try context.requirePrincipal().userId
            let balance = try await Database.transaction(client, context.operation) { tx in try await payouts.balance(of: vendor, in: tx) }
            return try JSONResponse.make(balance, cacheControl: "private, no-store")
        }
        vendors.get("/payouts") { request, context -> Response in
            let vendor = try context.requirePrincipal().userId
            let binding = KeysetCursor.binding("billing.payouts", sort: "newest", filters: [("vendor", vendor.lowercased)])
            let page = try await Database.transaction(client, context.operation) { tx in
                try await payouts.page(vendor: vendor, try KeysetPageRequest(request, order: Payouts.newestFirst, binding: binding), in: tx)
            }
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
        vendors.post("/payout-account") { request, context -> Response in
            let vendor = try context.requirePrincipal().userId
            let (account, created) = try await payouts.registerAccount(vendor: vendor, context: context.operation)
            return try JSONResponse.make(account, status: created ? .created : .ok, cacheControl: "private, no-store")
        }
        vendors.get("/payout-account") { request, context -> Response in
            guard let account = try await payouts.account(of: try context.requirePrincipal().userId, context: context.operation) else {
                throw BillingError.payoutAccountNotFound
            }
            return try JSONResponse.make(account, cacheControl: "private, no-store")
        }

        // Admins: a refund of an order's payment, whole or part.
        let admin = router.group("/v1/admin").add(middleware: RequireRole(.admin))
        admin.post("/refunds") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let key = try Idempotency.key(of: request)
            let (body, fingerprint) = try await request.idempotentBody(RefundBody.self, limit: bodyLimit)
            var v = Validator()
            let orderId = v.uuid(body.orderId, "orderId")
            let amount = v.money(amount: body.amount?.amount, currency: body.amount?.currency, "amount", positive: true)
            let reason = v.text(body.reason, "reason", length: 3...1000, multiline: true)
            try v.check()
            guard let orderId, let amount, let reason else { throw Problem.validation([]) }
            return try await Idempotency.run(caller: caller.userId, key: key, fingerprint: fingerprint, client: client,
                                             context: context.operation) { tx in
                let refund = try await orderPayments.refund(order: orderId, amount: amount, reason: reason, by: caller.userId, in: tx)
                return try StoredResponse.json(refund, status: .created)
            }
        }
    }

    /// Stripe's intent ids: `pi_` and letters and digits. Anything else is no intent (404).
    static func isIntentId(_ text: String) -> Bool {
        text.hasPrefix("pi_") && (4...100).contains(text.utf8.count) && text.utf8.dropFirst(3).allSatisfy { byte in
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
        }
    }
}
