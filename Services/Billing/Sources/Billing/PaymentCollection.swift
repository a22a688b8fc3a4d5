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
    /// Intents of orders (metadata `order_id`) are theirs to apply.
    let orders: OrderPayments
    var subscriptions: SubscriptionRepository { workflow.subscriptions }
    var invoices: InvoiceRepository { workflow.invoices }

    /// The charge job: one attempt at an open invoice.
    func charge(_ invoiceId: UUID, in tx: Transaction) async throws {
        try await charge([invoiceId], in: tx)
    }

    /// Charge jobs, a set at a time (the job runner hands over a batch's): one attempt at each open
    /// invoice. The subscriptions, then the invoices, are locked in id order (the order every path
    /// takes); the attempts are counted with one statement; the provider is asked for every charge
    /// at once (`charge(_ requests:)`), each with its own idempotency key; the answers are stored with one statement, and
    /// the plain successes (an active subscription's renewal paid) posted, marked paid and recorded
    /// with one statement each. Anything else (a failure, a first payment, a second invoice of one
    /// subscription) is recorded one at a time.
    func charge(_ invoiceIds: [UUID], in tx: Transaction) async throws {
        let locked = try await subscriptions.lock(ofInvoices: invoiceIds, in: tx)
        let owners = Dictionary(locked.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var charges: [(invoice: InvoiceView, subscription: Subscription)] = []
        var later: [UUID] = []
        var seen: Set<UUID> = []
        for invoice in try await invoices.lock(invoiceIds, in: tx) where invoice.status == InvoiceStatus.open.rawValue {
            guard let subscription = owners[invoice.subscriptionId], subscription.status != .paused, !subscription.status.isTerminal else { continue }
            // A second invoice of one subscription waits for the first one's outcome.
            guard seen.insert(subscription.id).inserted else { later.append(invoice.id); continue }
            charges.append((invoice, subscription))
        }
        let attempts = try await invoices.beginAttempts(charges.map(\.invoice.id), in: tx)
        // Inside the job's transaction: if it rolls back, the retry asks again with the same key
        // and the provider answers with the same intent instead of charging twice.
        let answers = try await provider.charge(charges.map { charge in
            let attempt = attempts[charge.invoice.id] ?? 1
            let invoice = charge.invoice, subscription = charge.subscription
            return (ChargeRequest(
                amount: invoice.amountDue, customer: subscription.customerId, paymentMethod: subscription.paymentMethod.id,
                description: "Invoice \(invoice.number ?? invoice.id.lowercased)",
                metadata: ["invoice_id": invoice.id.lowercased, "attempt": String(attempt), "subscription_id": subscription.id.lowercased]),
                    "invoice:\(invoice.id.lowercased):attempt:\(attempt)")
        })
        var outcomes: [Outcome] = []
        for (index, charge) in charges.enumerated() {
            let attempt = attempts[charge.invoice.id] ?? 1
            var invoice = charge.invoice
            invoice.attemptCount = attempt
            switch answers[index] {
            case .success(let intent):
                outcomes.append(Outcome(intent: intent, invoice: invoice, subscription: charge.subscription, attempt: attempt))
            case .failure(.invalidRequest(let message)):
                // The saved method can no longer be charged (detached, expired): a failed attempt.
                tx.logger.warning("charge refused by the provider", metadata: ["invoice.id": "\(invoice.id.lowercased)", "error": "\(message)"])
                try await recordFailure(invoice: invoice, of: charge.subscription, attempt: attempt, code: "invalid_payment_method", in: tx)
            case .failure(let error):
                // The provider could not answer: the set is retried, with the same keys.
                throw error
            }
        }
        try await record(outcomes, in: tx)
        for id in later { try await charge([id], in: tx) }
    }

    /// An answer about an intent, with the rows it concerns locked by this transaction.
    struct Outcome: Sendable {
        var intent: ProviderPaymentIntent
        var invoice: InvoiceView
        var subscription: Subscription
        var attempt: Int
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
        try await record([Outcome(intent: intent, invoice: invoice, subscription: subscription, attempt: attempt)], in: tx)
    }

    /// `record` with the subscriptions and the invoices locked by this transaction, for several
    /// intents (of distinct subscriptions) at once.
    func record(_ outcomes: [Outcome], in tx: Transaction) async throws {
        guard !outcomes.isEmpty else { return }
        // Stored, or brought up to date, unless already final: a final answer is never overwritten
        // and never applied twice (no row comes back).
        let changed = try await store(outcomes.map(\.intent), invoices: outcomes.map(\.invoice.id), attempts: outcomes.map(\.attempt), in: tx)
        var paid: [Outcome] = []
        for outcome in outcomes where changed.contains(outcome.intent.id) {
            switch outcome.intent.status {
            case .succeeded where Self.isPlainPayment(outcome):
                paid.append(outcome)
            case .succeeded:
                try await recordSuccess(outcome.intent, invoice: outcome.invoice, of: outcome.subscription, in: tx)
            case .requiresPaymentMethod, .canceled:
                try await recordFailure(invoice: outcome.invoice, of: outcome.subscription, attempt: outcome.attempt,
                                        code: outcome.intent.failureCode ?? outcome.intent.status.rawValue, in: tx)
            case .processing, .requiresAction, .requiresConfirmation:
                continue
            }
        }
        try await recordPlainPayments(paid, in: tx)
    }

    /// A payment that settles an open invoice of a subscription the payment leaves as it is (an
    /// active one's renewal): nothing to do but post it, mark the invoice paid and note it.
    static func isPlainPayment(_ o: Outcome) -> Bool {
        guard o.invoice.status == InvoiceStatus.open.rawValue,
              let (state, effects) = try? SubscriptionStateMachine.transition(from: o.subscription.status, on: .invoicePaid) else { return false }
        return state == o.subscription.status && effects.isEmpty
    }

    /// Stores intents as payments in one statement; answers the ids that were new or changed.
    func store(_ intents: [ProviderPaymentIntent], invoices: [UUID], attempts: [Int], in tx: Transaction) async throws -> Set<String> {
        let rows = try await tx.query("""
            INSERT INTO payments (intent_id, provider, invoice_id, attempt, amount, fee, currency, status, failure_code, created_at, updated_at)
            SELECT p.intent_id, \(provider.name), p.invoice_id, p.attempt, p.amount, p.fee, p.currency, p.status, p.failure_code, \(tx.now), \(tx.now)
            FROM unnest(\(intents.map(\.id))::text[], \(invoices)::uuid[], \(attempts.map(Int32.init))::int[], \(intents.map(\.amount.amount))::bigint[],
                        \(intents.map(\.fee.amount))::bigint[], \(intents.map(\.amount.currency.code))::text[], \(intents.map(\.status.rawValue))::text[],
                        \(NullableArray(intents.map(\.failureCode)))::text[])
                 AS p (intent_id, invoice_id, attempt, amount, fee, currency, status, failure_code)
            ON CONFLICT (intent_id) DO UPDATE SET status = EXCLUDED.status, fee = EXCLUDED.fee, failure_code = EXCLUDED.failure_code,
                updated_at = EXCLUDED.updated_at
            WHERE payments.status NOT IN ('succeeded', 'canceled', 'requires_payment_method')
            RETURNING intent_id
            """)
        var changed: Set<String> = []
        for try await id in rows.decode(String.self) { changed.insert(id) }
        return changed
    }

    /// Plain payments, a statement per table: posted, their invoices paid, their subscriptions'
    /// histories noted (the same rows `recordSuccess` leaves; the charge jobs end with the set).
    func recordPlainPayments(_ paid: [Outcome], in tx: Transaction) async throws {
        guard !paid.isEmpty else { return }
        try await workflow.ledger.post(paid.map { Self.posting($0.intent, invoice: $0.invoice, open: true) }, in: tx)
        try await invoices.markPaid(paid.map { ($0.invoice.id, $0.intent.amount) }, in: tx)
        try await tx.cancelWaiting(SubscriptionWorkflow.chargeInvoice, keys: paid.map(\.invoice.id.lowercased))
        try await subscriptions.record(paid.map {
            (SubscriptionChange(at: tx.now, status: $0.subscription.status.rawValue, event: SubscriptionEvent.invoicePaid.rawValue, actorId: nil, note: nil),
             $0.subscription.id)
        }, in: tx)
    }

    /// What a payment posts: the provider's balance and fee against what the invoice was owed, or,
    /// for a closed invoice (a success racing a cancellation), against unapplied payments: owed
    /// back, not lost.
    static func posting(_ intent: ProviderPaymentIntent, invoice: InvoiceView, open: Bool) -> Ledger.Posting {
        let net = intent.amount.amount - intent.fee.amount
        return Ledger.Posting(kind: "invoice_payment", reference: intent.id, currency: intent.amount.currency, memo: invoice.number ?? "",
                              lines: [.init(account: .providerBalance, amount: net), .init(account: .providerFees, amount: intent.fee.amount),
                                      .init(account: open ? .accountsReceivable : .unappliedPayments, amount: -intent.amount.amount)])
    }

    func recordSuccess(_ intent: ProviderPaymentIntent, invoice: InvoiceView, of subscription: Subscription, in tx: Transaction) async throws {
        let open = invoice.status == InvoiceStatus.open.rawValue
        try await workflow.ledger.post([Self.posting(intent, invoice: invoice, open: open)], in: tx)
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
        try await reconcile([intentId], in: tx)
    }

    /// Reconcile jobs, a set at a time: the intents read from the provider at once; those already
    /// recorded as final (a charge's own answer got there first, the common case) are passed over
    /// with one read; the rest are recorded as a set; the webhook events marked applied with one
    /// statement.
    func reconcile(_ intentIds: [String], in tx: Transaction) async throws {
        let final = try await finalPayments(intentIds, in: tx)
        let pending = intentIds.filter { !final.contains($0) }
        let intents = try await withThrowingTaskGroup(of: ProviderPaymentIntent.self) { group in
            for id in pending { group.addTask { try await provider.paymentIntent(id) } }
            var intents: [ProviderPaymentIntent] = []
            for try await intent in group { intents.append(intent) }
            return intents
        }
        var invoiceIntents: [(intent: ProviderPaymentIntent, invoice: UUID, attempt: Int)] = []
        try await orders.record(intents.filter { $0.metadata["order_id"] != nil }, in: tx)
        for intent in intents where intent.metadata["order_id"] == nil {
            guard let invoice = intent.metadata["invoice_id"].flatMap(UUID.init(uuidString:)),
                  let attempt = intent.metadata["attempt"].flatMap(Int.init) else {
                tx.logger.debug("payment intent is not an invoice's", metadata: ["payment_intent.id": "\(intent.id)"])
                continue
            }
            invoiceIntents.append((intent, invoice, attempt))
        }
        let ids = invoiceIntents.map(\.invoice)
        let owners = Dictionary(try await subscriptions.lock(ofInvoices: ids, in: tx).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let invoices = Dictionary(try await self.invoices.lock(ids, in: tx).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var outcomes: [Outcome] = []
        var later: [ProviderPaymentIntent] = []
        var seen: Set<UUID> = []
        for (intent, invoiceId, attempt) in invoiceIntents {
            guard let invoice = invoices[invoiceId], let subscription = owners[invoice.subscriptionId] else {
                tx.logger.warning("payment intent names an unknown invoice", metadata: ["payment_intent.id": "\(intent.id)"])
                continue
            }
            // Two intents about one subscription: the second is recorded after the first.
            guard seen.insert(subscription.id).inserted else { later.append(intent); continue }
            outcomes.append(Outcome(intent: intent, invoice: invoice, subscription: subscription, attempt: attempt))
        }
        try await record(outcomes, in: tx)
        for intent in later { try await record(intent, in: tx) }
        try await tx.query("""
            UPDATE webhook_events SET applied_at = \(tx.now) WHERE provider = \(provider.name) AND object_id = ANY(\(intentIds)) AND applied_at IS NULL
            """)
    }

    /// Of these intents, those recorded with a final status: nothing the provider says can change
    /// them. (An order's intent that failed is not final: the buyer may try another card.)
    func finalPayments(_ intentIds: [String], in tx: Transaction) async throws -> Set<String> {
        let rows = try await tx.query("""
            SELECT intent_id FROM payments WHERE intent_id = ANY(\(intentIds)) AND status IN ('succeeded', 'canceled', 'requires_payment_method')
            UNION ALL
            SELECT intent_id FROM order_payments WHERE intent_id = ANY(\(intentIds)) AND intent_status IN ('succeeded', 'canceled')
                AND status <> 'awaiting_payment'
            """)
        var final: Set<String> = []
        for try await id in rows.decode(String.self) { final.insert(id) }
        return final
    }
}
