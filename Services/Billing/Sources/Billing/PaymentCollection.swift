import Foundation
import Logging
import Platform
import PostgresNIO

struct IntentReconciliation: Codable, Sendable {
    var intentId: String
}

/// Collecting invoices: the charge job calls the provider (with an idempotency key per invoice
/// and attempt), and every answer about a payment intent (the charge's own reply, or a webhook
/// re-read from the provider) goes through `record`, which applies it once: a final status is
/// never overwritten, a stale failure never fails a newer attempt, and a payment is posted to
/// the ledger once.
struct PaymentCollection: Sendable {
    /// Re-reads an intent from the provider after a webhook; key: the intent id, so a burst of
    /// events about one intent is one read.
    static let reconcileIntent = JobKind<IntentReconciliation>("billing.reconcile-payment-intent", maxAttempts: 12,
                                                               backoff: .seconds(1), maximumBackoff: .seconds(900))

    let provider: any PaymentProvider
    let workflow: SubscriptionWorkflow
    var subscriptions: SubscriptionRepository { workflow.subscriptions }
    var invoices: InvoiceRepository { workflow.invoices }

    /// The charge job: one attempt at an open invoice.
    func charge(_ invoiceId: UUID, in tx: Transaction) async throws {
        guard let unlocked = try await invoices.load(invoiceId, lines: false, in: tx), unlocked.status == InvoiceStatus.open.rawValue else { return }
        // Locks in one order everywhere: the subscription, then its invoice.
        guard let subscription = try await subscriptions.lock(unlocked.subscriptionId, in: tx),
              subscription.status != .paused, !subscription.status.isTerminal,
              var invoice = try await invoices.lock(invoiceId, in: tx), invoice.status == InvoiceStatus.open.rawValue else { return }
        let attempt = try await invoices.beginAttempt(invoiceId, in: tx)
        invoice.attemptCount = attempt
        let request = ChargeRequest(
            amount: invoice.amountDue, customer: subscription.customerId, paymentMethod: subscription.paymentMethod.id,
            description: "Invoice \(invoice.number ?? invoice.id.lowercased)",
            metadata: ["invoice_id": invoice.id.lowercased, "attempt": String(attempt), "subscription_id": subscription.id.lowercased])
        let intent: ProviderPaymentIntent
        do {
            // Inside the job's transaction: if it rolls back, the retry asks again with the same
            // key and the provider answers with the same intent instead of charging twice.
            intent = try await provider.charge(request, idempotencyKey: "invoice:\(invoice.id.lowercased):attempt:\(attempt)")
        } catch ProviderError.invalidRequest(let message) {
            // The saved method can no longer be charged (detached, expired): a failed attempt.
            tx.logger.warning("charge refused by the provider", metadata: ["invoice.id": "\(invoice.id.lowercased)", "error": "\(message)"])
            try await recordFailure(invoice: invoice, of: subscription, attempt: attempt, code: "invalid_payment_method", in: tx)
            return
        }
        try await record(intent, invoice: invoice, of: subscription, attempt: attempt, in: tx)
    }

    /// Applies what the provider says about an intent, once.
    func record(_ intent: ProviderPaymentIntent, in tx: Transaction) async throws {
        guard let invoiceId = intent.metadata["invoice_id"].flatMap(UUID.init(uuidString:)),
              let attempt = intent.metadata["attempt"].flatMap(Int.init) else {
            tx.logger.debug("payment intent is not an invoice's", metadata: ["payment_intent.id": "\(intent.id)"])
            return
        }
        guard let unlocked = try await invoices.load(invoiceId, lines: false, in: tx) else {
            tx.logger.warning("payment intent names an unknown invoice", metadata: ["payment_intent.id": "\(intent.id)"])
            return
        }
        guard let subscription = try await subscriptions.lock(unlocked.subscriptionId, in: tx),
              let invoice = try await invoices.lock(invoiceId, in: tx) else { return }
        try await record(intent, invoice: invoice, of: subscription, attempt: attempt, in: tx)
    }

    /// `record` with the subscription and the invoice locked by this transaction.
    func record(_ intent: ProviderPaymentIntent, invoice: InvoiceView, of subscription: Subscription, attempt: Int, in tx: Transaction) async throws {
        // Stored, or brought up to date, unless already final: a final answer is never overwritten
        // and never applied twice (no row comes back).
        let changed = try await tx.first("""
            INSERT INTO payments (intent_id, provider, invoice_id, attempt, amount, fee, currency, status, failure_code, created_at, updated_at)
            VALUES (\(intent.id), \(provider.name), \(invoice.id), \(attempt), \(intent.amount.amount), \(intent.fee.amount), \(intent.amount.currency.code),
                    \(intent.status.rawValue), \(intent.failureCode), \(tx.now), \(tx.now))
            ON CONFLICT (intent_id) DO UPDATE SET status = EXCLUDED.status, fee = EXCLUDED.fee, failure_code = EXCLUDED.failure_code,
                updated_at = EXCLUDED.updated_at
            WHERE payments.status NOT IN ('succeeded', 'canceled', 'requires_payment_method')
            RETURNING true
            """, as: Bool.self) == true
        guard changed else { return }
        switch intent.status {
        case .succeeded:
            try await recordSuccess(intent, invoice: invoice, of: subscription, in: tx)
        case .requiresPaymentMethod, .canceled:
            try await recordFailure(invoice: invoice, of: subscription, attempt: attempt, code: intent.failureCode ?? intent.status.rawValue, in: tx)
        case .processing, .requiresAction, .requiresConfirmation:
            return
        }
    }

    func recordSuccess(_ intent: ProviderPaymentIntent, invoice: InvoiceView, of subscription: Subscription, in tx: Transaction) async throws {
        let net = intent.amount.amount - intent.fee.amount
        let open = invoice.status == InvoiceStatus.open.rawValue
        // Money that arrives for a closed invoice (a success racing a cancellation) is owed back, not lost.
        try await workflow.ledger.post(
            kind: "invoice_payment", reference: intent.id, currency: intent.amount.currency, memo: invoice.number ?? "",
            lines: [.init(account: .providerBalance, amount: net), .init(account: .providerFees, amount: intent.fee.amount),
                    .init(account: open ? .accountsReceivable : .unappliedPayments, amount: -intent.amount.amount)], in: tx)
        guard open else {
            tx.logger.warning("payment for a closed invoice held as unapplied", metadata: ["invoice.id": "\(invoice.id.lowercased)"])
            return
        }
        try await invoices.markPaid(invoice.id, amount: intent.amount, in: tx)
        try await tx.cancel(SubscriptionWorkflow.chargeInvoice, key: invoice.id.lowercased)
        try await workflow.applyIfAllowed(.invoicePaid, to: subscription, in: tx)
    }

    /// A failed attempt moves the subscription only if it is the invoice's latest and the invoice is
    /// still open: an old failure delivered after a newer success changes nothing.
    func recordFailure(invoice: InvoiceView, of subscription: Subscription, attempt: Int, code: String, in tx: Transaction) async throws {
        guard invoice.status == InvoiceStatus.open.rawValue, attempt >= invoice.attemptCount else { return }
        tx.logger.info("invoice payment failed", metadata: ["invoice.id": "\(invoice.id.lowercased)", "attempt": "\(attempt)", "failure.code": "\(code)"])
        let exhausted = subscription.status == .pastDue
            && workflow.dunning.nextRetry(after: tx.now, firstFailure: subscription.pastDueSince ?? tx.now) == nil
        // The next attempt, if any, is set again by the transition's `scheduleRetry`.
        try await invoices.setNextAttempt(invoice.id, at: nil, in: tx)
        try await workflow.applyIfAllowed(exhausted ? .retriesExhausted : .paymentFailed, to: subscription, in: tx)
    }

    /// The reconcile job: the intent as the provider holds it now.
    func reconcile(_ intentId: String, in tx: Transaction) async throws {
        let intent = try await provider.paymentIntent(intentId)
        try await record(intent, in: tx)
        try await tx.query("""
            UPDATE webhook_events SET applied_at = \(tx.now) WHERE provider = \(provider.name) AND object_id = \(intentId) AND applied_at IS NULL
            """)
    }
}
