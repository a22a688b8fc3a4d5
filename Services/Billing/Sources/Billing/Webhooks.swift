import Foundation
import Logging
import Platform
import PostgresNIO

/// The provider's webhooks: verified over the raw body, stored by event id, answered at once.
/// The work happens in a job that re-reads the object from the provider, so a redelivered event
/// does nothing and events in any order end in the object's current state.
struct WebhookIngestion: Sendable {
    /// Stripe's events are at most a few kilobytes; anything far larger is not one.
    static let maximumBodyBytes = 256 * 1024

    struct Receipt: Sendable, Codable, Equatable {
        var received: Bool
        /// The event was stored before: nothing more is done.
        var duplicate: Bool
    }

    let provider: any PaymentProvider
    let client: PostgresClient

    func receive(body: [UInt8], signature: String?, context: OperationContext) async throws -> Receipt {
        let event: ProviderEvent
        do {
            // Signatures are security time: the wall clock, never the business clock.
            event = try provider.verifyWebhook(body: body, signatureHeader: signature, now: Date())
        } catch ProviderError.invalidSignature(let detail) {
            throw BillingError.invalidSignature(detail)
        } catch ProviderError.invalidRequest(let detail) {
            // Signed by the provider, so not a forgery; but not an event this endpoint can store.
            throw Problem.validation([FieldError("body", "is not an event: \(detail)")])
        }
        // Two statements, each committing on its own: the event stored (or found), then, unless
        // billing already holds the intent in a final state, its re-read queued. A crash between
        // the two leaves a stored, unapplied event and no 2xx; the provider delivers it again, and
        // a redelivery of an unapplied event queues the re-read (once: the job is keyed by intent).
        let stored = try await Database.autocommit(client, context) { tx in
            let rows = try await tx.query("""
                WITH stored AS (
                    INSERT INTO webhook_events (provider, event_id, type, object_type, object_id, created, applied_at)
                    SELECT \(provider.name), \(event.id), \(event.type), \(event.objectType), \(event.objectId), \(event.created),
                           CASE WHEN EXISTS (SELECT 1 FROM payments WHERE intent_id = \(event.objectId)
                                             AND status IN ('succeeded', 'canceled', 'requires_payment_method'))
                                THEN \(tx.now) END
                    ON CONFLICT (provider, event_id) DO NOTHING
                    RETURNING applied_at IS NOT NULL AS applied)
                SELECT true, applied FROM stored
                UNION ALL
                SELECT false, applied_at IS NOT NULL FROM webhook_events
                WHERE provider = \(provider.name) AND event_id = \(event.id) AND NOT EXISTS (SELECT 1 FROM stored)
                """)
            var inserted = false
            var settled = true
            for try await (new, applied) in rows.decode((Bool, Bool).self) {
                inserted = new
                settled = applied
            }
            if !settled, event.objectType == "payment_intent" {
                try await tx.schedule(PaymentCollection.reconcileIntent, key: event.objectId,
                                      payload: IntentReconciliation(intentId: event.objectId), at: tx.now)
            }
            if !settled, event.objectType == "dispute" {
                try await tx.schedule(OrderPayments.reconcileChargeback, key: event.objectId,
                                      payload: ChargebackReconciliation(disputeId: event.objectId), at: tx.now)
            }
            return inserted
        }
        if stored {
            context.logger.info("webhook stored", metadata: ["webhook.id": "\(event.id)", "webhook.type": "\(event.type)"])
        }
        return Receipt(received: true, duplicate: !stored)
    }
}
