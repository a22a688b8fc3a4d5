import Contracts
import Foundation
import Platform
import PostgresNIO

/// Each event another service sends that someone should hear about, turned into a notification
/// (in app and, where wanted, by mail) through the `Notifier`, in the event's inbox transaction.
/// The cause key is the event's id, so a redelivered event notifies no one twice.
enum NotificationTriggers {
    static func register(_ notifier: Notifier, into handlers: inout EventHandlers) {
        // Identity's security mails: the address and the words' values come with the event.
        handlers.on(NotificationEvents.requested) { request, event, tx in
            let name = request.data["displayName"]
            var values: [String: String] = [:], links: [String: String] = [:]
            let kind: String
            switch request.template {
            case "email-verification":
                kind = "account.email_verification"
                links["verify"] = notifier.link("/verify-email?token=" + (request.data["token"] ?? ""))
                values["validFor"] = validity(request.data["expiresAt"], from: event.time)
            case "password-reset":
                kind = "account.password_reset"
                links["reset"] = notifier.link("/reset-password?token=" + (request.data["token"] ?? ""))
                values["validFor"] = validity(request.data["expiresAt"], from: event.time)
            case "password-changed":
                kind = "account.password_changed"
                values["changedAt"] = MailFormat.time(event.time)
                links["reset"] = notifier.link("/forgot-password")
            default:
                tx.logger.warning("notification template unknown; nothing sent", metadata: ["notification.template": "\(request.template)"])
                return
            }
            try await notifier.notify(kind, to: request.userId, cause: request.notificationId.lowercased,
                                      .init(values: values, links: links, address: request.to, displayName: name, inApp: false), in: tx)
        }
        handlers.on(ListingEvents.moderated) { decision, event, tx in
            let kind = ["approved": "listing.approved", "rejected": "listing.rejected", "removed": "listing.removed"][decision.decision]
            guard let kind else { return }
            try await notifier.notify(kind, to: decision.vendorId, cause: event.id, .init(
                values: ["listingTitle": decision.title, "reason": decision.reason ?? "no reason was given"],
                links: ["listing": notifier.link("/vendor/listings/\(decision.listingId.lowercased)")]), in: tx)
        }
        let notices: [(EventContract<SubscriptionNoticeV1>, String)] = [
            (BillingEvents.trialEnding, "subscription.trial_ending"), (BillingEvents.paymentFailed, "subscription.payment_failed"),
            (BillingEvents.suspended, "subscription.suspended"), (BillingEvents.reactivated, "subscription.reactivated"),
            (BillingEvents.canceled, "subscription.canceled"),
        ]
        for (contract, kind) in notices {
            handlers.on(contract) { notice, event, tx in
                try await notifier.notify(kind, to: notice.vendorId, cause: event.id, .init(
                    values: ["planName": notice.planName, "endsOn": MailFormat.day(notice.trialEnd),
                             "amount": MailFormat.money(notice.amountDue, notice.currency), "nextAttemptOn": MailFormat.day(notice.nextAttemptAt)],
                    links: ["billing": notifier.link("/vendor/subscription")]), in: tx)
            }
        }
        handlers.on(OrderEvents.placed) { placed, event, tx in
            guard let order = try await OrderFacts.load(placed.orderId, in: tx), let vendor = order.vendorId else { return }
            try await notifier.notify("order.placed", to: vendor, cause: event.id, .init(
                values: ["listingTitle": order.title, "buyerName": order.buyerName, "quantity": "\(placed.quantity)",
                         "total": MailFormat.money(placed.totalAmount, placed.currency)],
                links: ["order": notifier.link("/orders/\(order.id.lowercased)")]), in: tx)
        }
        handlers.on(OrderEvents.paid) { paid, event, tx in
            guard let order = try await OrderFacts.load(paid.orderId, in: tx), let vendor = order.vendorId else { return }
            try await notifier.notify("order.paid", to: vendor, cause: event.id, .init(
                values: ["listingTitle": order.title], links: ["order": notifier.link("/orders/\(order.id.lowercased)")]), in: tx)
        }
        handlers.on(OrderEvents.shipped) { shipped, event, tx in
            guard let order = try await OrderFacts.load(shipped.orderId, in: tx) else { return }
            try await notifier.notify("order.shipped", to: shipped.buyerId, cause: event.id, .init(
                values: ["listingTitle": order.title, "vendorName": order.vendorName, "carrier": shipped.carrier,
                         "trackingNumber": shipped.trackingNumber],
                links: ["order": notifier.link("/orders/\(order.id.lowercased)")]), in: tx)
        }
        handlers.on(OrderEvents.delivered) { delivered, event, tx in
            guard let order = try await OrderFacts.load(delivered.orderId, in: tx) else { return }
            try await notifier.notify("order.delivered", to: delivered.buyerId, cause: event.id, .init(
                values: ["listingTitle": order.title, "receiptAssumedOn": MailFormat.day(delivered.receiptAssumedAt)],
                links: ["order": notifier.link("/orders/\(order.id.lowercased)")]), in: tx)
        }
        handlers.on(OrderEvents.canceled) { canceled, event, tx in
            guard let order = try await OrderFacts.load(canceled.orderId, in: tx) else { return }
            let refund = canceled.wasPaid == true ? "The payment is refunded in full." : "Nothing was charged."
            let values = ["listingTitle": order.title, "reason": canceled.reason.replacingOccurrences(of: "_", with: " "), "refundNote": refund]
            let links = ["order": notifier.link("/orders/\(order.id.lowercased)")]
            for party in [order.buyerId, order.vendorId].compactMap({ $0 }) {
                try await notifier.notify("order.canceled", to: party, cause: event.id, .init(values: values, links: links), in: tx)
            }
        }
        handlers.on(OrderEvents.received) { received, event, tx in
            guard let order = try await OrderFacts.load(received.orderId, in: tx) else { return }
            try await notifier.notify("order.received", to: received.vendorId, cause: event.id, .init(
                values: ["listingTitle": order.title, "vendorAmount": MailFormat.money(received.vendorAmount, received.currency),
                         "commission": MailFormat.money(received.commissionAmount, received.currency)],
                links: ["balance": notifier.link("/vendor/balance")]), in: tx)
        }
        handlers.on(DisputeEvents.opened) { dispute, event, tx in
            guard let order = try await OrderFacts.load(dispute.orderId, in: tx) else { return }
            try await notifier.notify("dispute.opened", to: dispute.vendorId, cause: event.id, .init(
                values: ["listingTitle": order.title, "buyerName": order.buyerName, "reason": dispute.reason.replacingOccurrences(of: "_", with: " ")],
                links: ["dispute": notifier.link("/disputes/\(dispute.disputeId.lowercased)")]), in: tx)
        }
        handlers.on(DisputeEvents.withdrawn) { dispute, event, tx in
            guard let order = try await OrderFacts.load(dispute.orderId, in: tx) else { return }
            try await notifier.notify("dispute.withdrawn", to: dispute.vendorId, cause: event.id, .init(
                values: ["listingTitle": order.title], links: ["order": notifier.link("/orders/\(order.id.lowercased)")]), in: tx)
        }
        handlers.on(DisputeEvents.escalated) { dispute, event, tx in
            guard let order = try await OrderFacts.load(dispute.orderId, in: tx) else { return }
            let values = ["listingTitle": order.title, "openedOn": MailFormat.day(dispute.at.addingTimeInterval(-14 * 86_400))]
            for admin in try await Recipients.admins(in: tx) {
                try await notifier.notify("dispute.escalated", to: admin, cause: event.id, .init(
                    values: values, links: ["desk": notifier.link("/moderation/disputes/\(dispute.disputeId.lowercased)")]), in: tx)
            }
        }
        handlers.on(DisputeEvents.resolved) { dispute, event, tx in
            guard let order = try await OrderFacts.load(dispute.orderId, in: tx) else { return }
            let decision = switch (dispute.outcome, dispute.refundAmount) {
            case ("release", _): "the payment is released to the vendor."
            case (_, let refund) where refund >= dispute.totalAmount: "\(MailFormat.money(refund, dispute.currency)), all of it, goes back to the buyer."
            case (_, let refund): "\(MailFormat.money(refund, dispute.currency)) goes back to the buyer and the rest is released to the vendor."
            }
            for party in [dispute.buyerId, dispute.vendorId] {
                try await notifier.notify("dispute.resolved", to: party, cause: event.id, .init(
                    values: ["listingTitle": order.title, "decision": decision],
                    links: ["dispute": notifier.link("/disputes/\(dispute.disputeId.lowercased)")]), in: tx)
            }
        }
        handlers.on(PaymentEvents.refunded) { refund, event, tx in
            guard let order = try await OrderFacts.load(refund.orderId, in: tx) else { return }
            try await notifier.notify("payment.refunded", to: order.buyerId, cause: event.id, .init(
                values: ["amount": MailFormat.money(refund.amount, refund.currency), "listingTitle": order.title],
                links: ["order": notifier.link("/orders/\(order.id.lowercased)")]), in: tx)
        }
    }

    /// "30 minutes" from the event to the link's expiry (identity sends the expiry).
    static func validity(_ expiresAt: String?, from time: Date) -> String {
        guard let expiresAt, let expiry = EventCoding.parseTime(expiresAt) else { return "a limited time" }
        return MailFormat.duration(expiry.timeIntervalSince(time))
    }
}

/// An order as mails name it: the projection's parties and the listing's title.
struct OrderFacts: Sendable {
    var id: UUID
    var buyerId: UUID
    var vendorId: UUID?
    var title: String
    var buyerName: String
    var vendorName: String

    static func load(_ id: UUID, in tx: Transaction) async throws -> OrderFacts? {
        let rows = try await tx.query("""
            SELECT o.order_id, o.buyer_id, o.vendor_id, coalesce(l.title, 'your order'),
                   coalesce(b.display_name, 'A buyer'), coalesce(v.display_name, 'The vendor')
            FROM order_facts o
            LEFT JOIN listing_facts l ON l.listing_id = o.listing_id
            LEFT JOIN users b ON b.id = o.buyer_id
            LEFT JOIN users v ON v.id = o.vendor_id
            WHERE o.order_id = \(id)
            """)
        for try await (id, buyer, vendor, title, buyerName, vendorName) in rows.decode((UUID, UUID, UUID?, String, String, String).self) {
            return OrderFacts(id: id, buyerId: buyer, vendorId: vendor, title: title, buyerName: buyerName, vendorName: vendorName)
        }
        return nil
    }
}

/// Mail about new messages: the first at once, then at most one per conversation and recipient
/// every 10 minutes. Posting takes the recipient's mark when it is 10 minutes old (in the post's
/// own statement); the mail then also schedules a check 10 minutes on, which mails once more if
/// messages came meanwhile and are still unread. A timer, not a sleep: it survives restarts.
enum MessageMail {
    static let interval: TimeInterval = 600

    struct Check: Codable, Sendable {
        var conversationId: UUID
        var userId: UUID
    }

    static let check = JobKind<Check>("messaging.message-mail-check", maxAttempts: 5, backoff: .seconds(5), maximumBackoff: .seconds(300))

    /// Mails `recipient` about the conversation now and sets the next check.
    static func mail(_ conversation: ConversationRow, to recipient: UUID, from author: UUID, notifier: Notifier, cause: String, in tx: Transaction) async throws {
        let rows = try await tx.query("""
            SELECT coalesce(l.title, c.subject_title, 'your conversation'), coalesce(u.display_name, 'Someone')
            FROM conversations c LEFT JOIN listing_facts l ON l.listing_id = c.listing_id LEFT JOIN users u ON u.id = \(author)
            WHERE c.id = \(conversation.id)
            """)
        var subject = "your conversation", sender = "Someone"
        for try await (title, name) in rows.decode((String, String).self) { (subject, sender) = (title, name) }
        try await notifier.notify("message.received", to: recipient, cause: cause, .init(
            values: ["senderName": sender, "subjectTitle": subject],
            links: ["conversation": notifier.link("/conversations/\(conversation.id.lowercased)")]), in: tx)
        try await tx.schedule(check, key: "\(conversation.id.lowercased):\(recipient.lowercased)",
                              payload: Check(conversationId: conversation.id, userId: recipient), at: tx.now.addingTimeInterval(interval), ifExists: .replace)
    }

    /// The check: messages from the other party after the last mail, still unread? Mail once more.
    static func run(_ check: Check, notifier: Notifier, repository: ConversationRepository, in tx: Transaction) async throws {
        guard let conversation = try await repository.load(check.conversationId, lock: true, in: tx) else { return }
        let rows = try await tx.query("""
            SELECT m.last_mailed_at, max(g.author_id::text)
            FROM message_mail_marks m
            JOIN conversations c ON c.id = m.conversation_id
            JOIN messages g ON g.conversation_id = c.id AND g.author_id <> m.user_id AND g.created_at > m.last_mailed_at AND g.deleted_at IS NULL
            WHERE m.conversation_id = \(check.conversationId) AND m.user_id = \(check.userId)
              AND (CASE WHEN c.buyer_id = m.user_id THEN c.buyer_unread ELSE c.vendor_unread END) > 0
              AND g.created_at > coalesce(CASE WHEN c.buyer_id = m.user_id THEN c.buyer_read_at ELSE c.vendor_read_at END, '-infinity')
            GROUP BY m.last_mailed_at
            """)
        var waiting: (Date, String)?
        for try await row in rows.decode((Date, String).self) { waiting = row }
        guard let (lastMailed, _) = waiting else { return }
        try await tx.query("UPDATE message_mail_marks SET last_mailed_at = \(tx.now) WHERE conversation_id = \(check.conversationId) AND user_id = \(check.userId)")
        try await mail(conversation, to: check.userId, from: conversation.other(than: check.userId), notifier: notifier,
                       cause: "messages:\(check.conversationId.lowercased):\(check.userId.lowercased):\(SortKeyValue.microseconds(lastMailed))", in: tx)
    }
}

/// Who receives what is addressed to a role rather than a person.
enum Recipients {
    /// The most admins one notice goes to.
    static let maximumAdmins = 100

    /// The active admins, as the users projection knows them (`users_active_admins`).
    static func admins(in tx: Transaction) async throws -> [UUID] {
        var ids: [UUID] = []
        for try await id in try await tx.query("""
            SELECT id FROM users WHERE roles @> ARRAY['admin']::text[] AND status = 'active' ORDER BY id LIMIT \(Self.maximumAdmins)
            """).decode(UUID.self) {
            ids.append(id)
        }
        return ids
    }
}
