import Foundation
import Platform
import PostgresNIO

/// A vendor's subscription as billing stores it.
struct Subscription: Sendable, Equatable {
    var id: UUID
    var vendorId: UUID
    var planId: UUID
    var pendingPlanId: UUID?
    var status: SubscriptionStatus
    var cancelAtPeriodEnd: Bool
    var trialEnd: Date?
    var currentPeriodStart: Date
    var currentPeriodEnd: Date
    var pausedUntil: Date?
    var canceledAt: Date?
    var endedAt: Date?
    var provider: String
    var customerId: String
    var paymentMethod: ProviderPaymentMethod
    var latestInvoiceId: UUID?
    var pastDueSince: Date?
    var version: Int
    var createdAt: Date
    var updatedAt: Date
}

/// One status change in a subscription's life.
struct SubscriptionChange: Sendable, Codable, Equatable {
    var at: Date
    var status: String
    /// What happened, in the transition table's words (`renewed`, `paid`, `suspended`, …).
    var event: String
    /// Who asked (the vendor or an admin); null for the clock and the provider.
    var actorId: UUID?
    var note: String?
}

/// The saved payment method as a client sees it: never the provider's full details.
struct PaymentMethodView: Sendable, Codable, Equatable {
    var id: String
    var brand: String
    var last4: String
}

/// The subscription as the API shows it (`POST /v1/subscriptions`, `GET /v1/vendor/subscription`,
/// `GET /v1/subscriptions/{id}`); `history` is filled on the single read and empty elsewhere.
struct SubscriptionView: Sendable, Codable, Equatable {
    var id: UUID
    var vendorId: UUID
    var plan: Plan
    var pendingPlan: Plan?
    var status: String
    var cancelAtPeriodEnd: Bool
    var trialEnd: Date?
    var currentPeriodStart: Date
    var currentPeriodEnd: Date
    var pausedUntil: Date?
    var canceledAt: Date?
    var endedAt: Date?
    var paymentMethod: PaymentMethodView
    var latestInvoice: InvoiceView?
    var version: Int
    var createdAt: Date
    var history: [SubscriptionChange]
}

struct SubscriptionRepository: Sendable {
    static let columns = """
        id, vendor_id, plan_id, pending_plan_id, status, cancel_at_period_end, trial_end, current_period_start, current_period_end,
        paused_until, canceled_at, ended_at, provider, customer_id, payment_method_id, payment_method_brand, payment_method_last4,
        latest_invoice_id, past_due_since, version, created_at, updated_at
        """

    /// The subscription, its row locked until the transaction ends: every change goes through here.
    func lock(_ id: UUID, in tx: Transaction) async throws -> Subscription? {
        try await Self.decode(tx.query("SELECT \(unescaped: Self.columns) FROM subscriptions WHERE id = \(id) FOR UPDATE")).first
    }

    /// Several subscriptions locked, in id order: the order every set takes its locks in.
    func lock(_ ids: [UUID], in tx: Transaction) async throws -> [Subscription] {
        guard !ids.isEmpty else { return [] }
        return try await Self.decode(tx.query("SELECT \(unescaped: Self.columns) FROM subscriptions WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE"))
    }

    /// The subscriptions of these invoices, locked in id order (a set of charges takes these
    /// before its invoices, as a single charge does).
    func lock(ofInvoices invoices: [UUID], in tx: Transaction) async throws -> [Subscription] {
        guard !invoices.isEmpty else { return [] }
        return try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM subscriptions
            WHERE id IN (SELECT subscription_id FROM invoices WHERE id = ANY(\(invoices))) ORDER BY id FOR UPDATE
            """))
    }

    func load(_ id: UUID, in tx: Transaction) async throws -> Subscription? {
        try await Self.decode(tx.query("SELECT \(unescaped: Self.columns) FROM subscriptions WHERE id = \(id)")).first
    }

    /// The vendor's newest subscription (the live one if any: there is at most one).
    func current(vendor: UUID, in tx: Transaction) async throws -> Subscription? {
        try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM subscriptions WHERE vendor_id = \(vendor)
            ORDER BY created_at DESC, id DESC LIMIT 1
            """)).first
    }

    /// Whether the vendor has ever had a subscription: a trial is for the first one only.
    func hasHadSubscription(vendor: UUID, in tx: Transaction) async throws -> Bool {
        try await tx.first("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE vendor_id = \(vendor))", as: Bool.self) ?? false
    }

    func insert(_ s: Subscription, in tx: Transaction) async throws {
        try await tx.query("""
            INSERT INTO subscriptions (id, vendor_id, plan_id, pending_plan_id, status, cancel_at_period_end, trial_end, current_period_start,
                current_period_end, paused_until, canceled_at, ended_at, provider, customer_id, payment_method_id, payment_method_brand,
                payment_method_last4, latest_invoice_id, past_due_since, version, created_at, updated_at)
            VALUES (\(s.id), \(s.vendorId), \(s.planId), \(s.pendingPlanId), \(s.status.rawValue), \(s.cancelAtPeriodEnd), \(s.trialEnd),
                \(s.currentPeriodStart), \(s.currentPeriodEnd), \(s.pausedUntil), \(s.canceledAt), \(s.endedAt), \(s.provider), \(s.customerId),
                \(s.paymentMethod.id), \(s.paymentMethod.brand), \(s.paymentMethod.last4), \(s.latestInvoiceId), \(s.pastDueSince),
                \(s.version), \(s.createdAt), \(s.updatedAt))
            """)
    }

    /// Writes the subscription with its next version; one that did not change (a renewal's
    /// payment on an active subscription) is left as it is, version and all.
    func update(_ s: Subscription, from current: Subscription, in tx: Transaction) async throws -> Subscription {
        try await update([(s, current)], in: tx)[0]
    }

    /// Writes each changed subscription (every mutable column) with its next version, in one
    /// statement; answers them as written, in the order given.
    func update(_ changes: [(next: Subscription, current: Subscription)], in tx: Transaction) async throws -> [Subscription] {
        let written = changes.map { change in
            guard change.next != change.current else { return change.current }
            var updated = change.next
            updated.version = change.next.version + 1
            updated.updatedAt = tx.now
            return updated
        }
        let rows = zip(changes, written).filter { $0.0.next != $0.0.current }.map(\.1)
        guard !rows.isEmpty else { return written }
        try await tx.query("""
            UPDATE subscriptions s SET plan_id = u.plan_id, pending_plan_id = u.pending_plan_id, status = u.status,
                cancel_at_period_end = u.cancel_at_period_end, trial_end = u.trial_end, current_period_start = u.current_period_start,
                current_period_end = u.current_period_end, paused_until = u.paused_until, canceled_at = u.canceled_at,
                ended_at = u.ended_at, payment_method_id = u.payment_method_id, payment_method_brand = u.payment_method_brand,
                payment_method_last4 = u.payment_method_last4, latest_invoice_id = u.latest_invoice_id,
                past_due_since = u.past_due_since, version = u.version, updated_at = u.updated_at
            FROM unnest(\(rows.map(\.id))::uuid[], \(rows.map(\.planId))::uuid[], \(NullableArray(rows.map(\.pendingPlanId)))::uuid[],
                        \(rows.map(\.status.rawValue))::text[], \(rows.map(\.cancelAtPeriodEnd))::bool[], \(NullableArray(rows.map(\.trialEnd)))::timestamptz[],
                        \(rows.map(\.currentPeriodStart))::timestamptz[], \(rows.map(\.currentPeriodEnd))::timestamptz[],
                        \(NullableArray(rows.map(\.pausedUntil)))::timestamptz[], \(NullableArray(rows.map(\.canceledAt)))::timestamptz[], \(NullableArray(rows.map(\.endedAt)))::timestamptz[],
                        \(rows.map(\.paymentMethod.id))::text[], \(rows.map(\.paymentMethod.brand))::text[], \(rows.map(\.paymentMethod.last4))::text[],
                        \(NullableArray(rows.map(\.latestInvoiceId)))::uuid[], \(NullableArray(rows.map(\.pastDueSince)))::timestamptz[], \(rows.map { Int32($0.version) })::int[],
                        \(rows.map(\.updatedAt))::timestamptz[])
                 AS u (id, plan_id, pending_plan_id, status, cancel_at_period_end, trial_end, current_period_start, current_period_end,
                       paused_until, canceled_at, ended_at, payment_method_id, payment_method_brand, payment_method_last4,
                       latest_invoice_id, past_due_since, version, updated_at)
            WHERE s.id = u.id
            """)
        return written
    }

    func record(_ change: SubscriptionChange, of id: UUID, in tx: Transaction) async throws {
        try await record([(change, id)], in: tx)
    }

    /// Appends changes to subscriptions' histories, in one statement.
    func record(_ changes: [(change: SubscriptionChange, subscription: UUID)], in tx: Transaction) async throws {
        guard !changes.isEmpty else { return }
        let c = changes.map(\.change)
        try await tx.query("""
            INSERT INTO subscription_history (subscription_id, at, status, event, actor_id, note)
            SELECT * FROM unnest(\(changes.map(\.subscription))::uuid[], \(c.map(\.at))::timestamptz[], \(c.map(\.status))::text[],
                                 \(c.map(\.event))::text[], \(NullableArray(c.map(\.actorId)))::uuid[], \(NullableArray(c.map(\.note)))::text[])
            """)
    }

    /// The status changes, oldest first (a subscription's life is short: bounded at 500 all the same).
    func history(of id: UUID, in tx: Transaction) async throws -> [SubscriptionChange] {
        let rows = try await tx.query("""
            SELECT at, status, event, actor_id, note FROM subscription_history WHERE subscription_id = \(id) ORDER BY id LIMIT 500
            """)
        var changes: [SubscriptionChange] = []
        for try await (at, status, event, actor, note) in rows.decode((Date, String, String, UUID?, String?).self) {
            changes.append(SubscriptionChange(at: at, status: status, event: event, actorId: actor, note: note))
        }
        return changes
    }

    static func decode(_ rows: PostgresRowSequence) async throws -> [Subscription] {
        var result: [Subscription] = []
        for try await row in rows {
            let c = row.makeRandomAccess()
            let statusText = try c[4].decode(String.self)
            guard let status = SubscriptionStatus(rawValue: statusText) else { throw BillingStoreError.unknownStatus(statusText) }
            result.append(Subscription(
                id: try c[0].decode(UUID.self), vendorId: try c[1].decode(UUID.self), planId: try c[2].decode(UUID.self),
                pendingPlanId: try c[3].decode(UUID?.self), status: status, cancelAtPeriodEnd: try c[5].decode(Bool.self),
                trialEnd: try c[6].decode(Date?.self), currentPeriodStart: try c[7].decode(Date.self), currentPeriodEnd: try c[8].decode(Date.self),
                pausedUntil: try c[9].decode(Date?.self), canceledAt: try c[10].decode(Date?.self), endedAt: try c[11].decode(Date?.self),
                provider: try c[12].decode(String.self), customerId: try c[13].decode(String.self),
                paymentMethod: ProviderPaymentMethod(id: try c[14].decode(String.self), brand: try c[15].decode(String.self),
                                                     last4: try c[16].decode(String.self)),
                latestInvoiceId: try c[17].decode(UUID?.self), pastDueSince: try c[18].decode(Date?.self),
                version: Int(try c[19].decode(Int32.self)), createdAt: try c[20].decode(Date.self), updatedAt: try c[21].decode(Date.self)))
        }
        return result
    }
}

/// A row that this build cannot read: a bug or a database ahead of the code, never the client's fault.
enum BillingStoreError: Error, Equatable {
    case unknownStatus(String)
}
