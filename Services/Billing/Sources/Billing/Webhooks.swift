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
        let stored = try await Database.transaction(client, context) { tx in
            // An intent billing already holds in a final state cannot change again: the event is
            // news to nobody, so it is stored as applied and no job re-reads the intent. One
            // statement stores the event and says which it was.
            let rows = try await tx.query("""
                INSERT INTO webhook_events (provider, event_id, type, object_type, object_id, created, applied_at)
                SELECT \(provider.name), \(event.id), \(event.type), \(event.objectType), \(event.objectId), \(event.created),
                       CASE WHEN EXISTS (SELECT 1 FROM payments WHERE intent_id = \(event.objectId)
                                         AND status IN ('succeeded', 'canceled', 'requires_payment_method'))
                            THEN \(tx.now) END
                ON CONFLICT (provider, event_id) DO NOTHING
                RETURNING applied_at IS NOT NULL
                """)
            var inserted = false
            var settled = false
            for try await applied in rows.decode(Bool.self) {
                inserted = true
                settled = applied
            }
            if inserted, !settled, event.objectType == "payment_intent" {
                try await tx.schedule(PaymentCollection.reconcileIntent, key: event.objectId,
                                      payload: IntentReconciliation(intentId: event.objectId), at: tx.now)
            }
            return inserted
        }
        if stored {
            context.logger.info("webhook stored", metadata: ["webhook.id": "\(event.id)", "webhook.type": "\(event.type)"])
        }
        return Receipt(received: true, duplicate: !stored)
    }
}
