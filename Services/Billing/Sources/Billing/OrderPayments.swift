import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

struct OrderIntent: Codable, Sendable {
    var orderId: UUID
}

/// Buyers' payments for orders. `order.placed` states what the buyer owes; billing records the
/// payment and a job asks the provider for an intent (idempotency key: the order), which
/// `payment.intent_created` hands to orders for the buyer's client to confirm.
struct OrderPayments: Sendable {
    /// Creates an order's payment intent at the provider; key: the order id.
    static let createIntent = JobKind<OrderIntent>("billing.create-order-intent", maxAttempts: 12, backoff: .seconds(1), maximumBackoff: .seconds(300))

    let provider: any PaymentProvider

    /// Records the payment an order needs, once: a redelivered `order.placed` (even under a new
    /// event id) finds the row. An event from before orders stated prices is not one to charge.
    func placed(_ order: OrderPlacedV1, in tx: Transaction) async throws {
        guard let vendor = order.vendorId, let total = order.totalAmount, total > 0, let commission = order.commissionAmount,
              let code = order.currency, let currency = try? Currency(code: code) else {
            tx.logger.warning("order.placed without a price; nothing to charge", metadata: ["order.id": "\(order.orderId.lowercased)"])
            return
        }
        let inserted = try await tx.first("""
            INSERT INTO order_payments (order_id, buyer_id, vendor_id, amount, commission, currency, status, provider, created_at, updated_at)
            VALUES (\(order.orderId), \(order.buyerId), \(vendor), \(total), \(min(max(commission, 0), total)), \(currency.code),
                    \(OrderPaymentStatus.awaitingPayment.rawValue), \(provider.name), \(tx.now), \(tx.now))
            ON CONFLICT (order_id) DO NOTHING
            RETURNING true
            """, as: Bool.self) == true
        guard inserted else { return }
        try await tx.schedule(Self.createIntent, key: order.orderId.lowercased, payload: OrderIntent(orderId: order.orderId), at: tx.now)
    }

    /// The job: the provider's intent for the order (the same one on a retry), stored and announced.
    func createIntent(for orderId: UUID, in tx: Transaction) async throws {
        let rows = try await tx.query("""
            SELECT amount, currency, buyer_id, intent_id FROM order_payments WHERE order_id = \(orderId) FOR UPDATE
            """)
        var found: (Int64, String, UUID, String?)?
        for try await row in rows.decode((Int64, String, UUID, String?).self) { found = row }
        guard let (amount, code, buyer, existing) = found, existing == nil else { return }
        let money = try Money(amount: amount, currencyCode: code)
        let intent = try await provider.createPaymentIntent(PaymentIntentRequest(
            amount: money, description: "Order \(orderId.lowercased)",
            metadata: ["order_id": orderId.lowercased, "buyer_id": buyer.lowercased], transferGroup: orderId.lowercased),
            idempotencyKey: "order:\(orderId.lowercased):intent")
        try await tx.query("""
            UPDATE order_payments SET intent_id = \(intent.id), client_secret = \(intent.clientSecret), version = version + 1, updated_at = \(tx.now)
            WHERE order_id = \(orderId)
            """)
        try await Outbox.emit(PaymentEvents.intentCreated, PaymentIntentV1(
            orderId: orderId, intentId: intent.id, clientSecret: intent.clientSecret, status: intent.status.rawValue, amount: amount,
            currency: money.currency.code, occurredAt: tx.now), in: tx)
    }
}
