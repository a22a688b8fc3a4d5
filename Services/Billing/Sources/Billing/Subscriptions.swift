import Foundation
import Logging
import Platform
import PostgresNIO

/// What the subscription endpoints do: provider calls first (outside any transaction, each with
/// its idempotency key), then one transaction through the policy and the workflow.
struct Subscriptions: Sendable {
    let client: PostgresClient
    let provider: any PaymentProvider
    let workflow: SubscriptionWorkflow
    var repository: SubscriptionRepository { workflow.subscriptions }

    enum Action: Sendable {
        case cancel(atPeriodEnd: Bool)
        case resume
        case pause(resumeAt: Date?)
        case changePlan(Plan)
        case paymentMethod(ProviderPaymentMethod)
        case comp(days: Int)
    }

    // MARK: Provider

    /// The vendor's customer at the provider, made once and remembered.
    func customer(for vendor: UUID, context: OperationContext) async throws -> String {
        if let known = try await client.query("""
            SELECT customer_id FROM customers WHERE vendor_id = \(vendor) AND provider = \(provider.name)
            """, logger: context.logger).decode(String.self).first(where: { _ in true }) {
            return known
        }
        let created = try await callProvider {
            try await provider.createCustomer(NewCustomer(vendorId: vendor, description: "Vendor \(vendor.lowercased)"),
                                              idempotencyKey: "customer:\(vendor.lowercased)")
        }
        try await client.query("""
            INSERT INTO customers (vendor_id, provider, customer_id) VALUES (\(vendor), \(provider.name), \(created.id))
            ON CONFLICT (vendor_id, provider) DO NOTHING
            """, logger: context.logger)
        return try await client.query("""
            SELECT customer_id FROM customers WHERE vendor_id = \(vendor) AND provider = \(provider.name)
            """, logger: context.logger).decode(String.self).first(where: { _ in true }) ?? created.id
    }

    /// Saves a payment method; a declined card is a 402, an unknown one a 422.
    func attach(_ paymentMethod: String, customer: String, key: String) async throws -> ProviderPaymentMethod {
        do {
            return try await callProvider { try await provider.attachPaymentMethod(paymentMethod, to: customer, idempotencyKey: key) }
        } catch ProviderError.cardDeclined(let code, let message) {
            throw BillingError.cardDeclined(code: code, message: message)
        } catch ProviderError.invalidRequest(let detail) {
            throw BillingError.unknownPaymentMethod(detail)
        }
    }

    private func callProvider<T>(_ call: () async throws -> T) async throws -> T {
        do {
            return try await call()
        } catch ProviderError.unavailable {
            throw BillingError.providerUnavailable
        }
    }

    // MARK: Changes

    /// One action on a subscription, in one transaction: policy, precondition, transition.
    func act(_ action: Action, on id: UUID, precondition: Versioning.Precondition?, by caller: Principal,
             note: String? = nil, context: OperationContext) async throws -> SubscriptionView {
        try await Database.transaction(client, context) { tx in
            guard let current = try await repository.lock(id, in: tx) else { throw BillingError.subscriptionNotFound }
            let policyAction: BillingPolicy.Action = switch action {
            case .cancel: .cancel
            case .comp: .comp
            default: .manage
            }
            try BillingPolicy.authorize(policyAction, vendorId: current.vendorId, by: caller)
            try Versioning.check(precondition, current: current.version)
            var input = SubscriptionInput(actorId: caller.userId, note: note)
            let event: SubscriptionEvent
            switch action {
            case .cancel(let atPeriodEnd):
                event = atPeriodEnd ? .scheduleCancel : .cancelNow
            case .resume:
                event = current.status == .paused ? .resume : .unscheduleCancel
                if event == .unscheduleCancel, !current.cancelAtPeriodEnd {
                    throw Problem(.conflict, "This subscription is neither paused nor set to cancel; there is nothing to resume.",
                                  typeSlug: "invalid-transition")
                }
            case .pause(let resumeAt):
                if let resumeAt, resumeAt <= tx.now { throw Problem.validation([FieldError("resumeAt", "must be in the future")]) }
                input.resumeAt = resumeAt
                event = .pause
            case .changePlan(let plan):
                let currentPlan = try await workflow.plan(current.planId, in: tx)
                guard plan.id != currentPlan.id else { throw Problem.validation([FieldError("plan", "is already this subscription's plan")]) }
                guard plan.price.currency == currentPlan.price.currency else {
                    throw Problem.validation([FieldError("plan", "must be priced in \(currentPlan.price.currency.code), like the current plan")])
                }
                input.plan = plan
                event = Self.isUpgrade(from: currentPlan, to: plan) ? .upgrade : .downgrade
            case .paymentMethod(let method):
                input.paymentMethod = method
                event = .paymentMethodChanged
            case .comp(let days):
                input.freeDays = days
                event = .comp
            }
            let saved = try await workflow.apply(event, to: current, input: input, in: tx)
            return try await views([saved], history: true, in: tx)[0]
        }
    }

    /// An upgrade costs more per second over the same interval and applies now, prorated; anything
    /// else (cheaper, or another interval) applies at the period's end.
    static func isUpgrade(from old: Plan, to new: Plan) -> Bool {
        old.interval == new.interval && new.price.amount > old.price.amount
    }

    // MARK: Reads

    func subscription(_ id: UUID, by caller: Principal, context: OperationContext) async throws -> SubscriptionView {
        try await Database.transaction(client, context) { tx in
            guard let subscription = try await repository.load(id, in: tx) else { throw BillingError.subscriptionNotFound }
            try BillingPolicy.authorize(.read, vendorId: subscription.vendorId, by: caller)
            if caller.userId != subscription.vendorId { try await StaffReads.record(caller, read: "subscription", id: id, in: tx) }
            return try await views([subscription], history: true, in: tx)[0]
        }
    }

    func current(vendor: UUID, context: OperationContext) async throws -> SubscriptionView {
        try await Database.transaction(client, context) { tx in
            guard let subscription = try await repository.current(vendor: vendor, in: tx) else { throw BillingError.noSubscription }
            return try await views([subscription], history: false, in: tx)[0]
        }
    }

    /// The admin list, newest first, optionally one vendor's or one status's.
    func page(vendor: UUID?, status: SubscriptionStatus?, _ page: KeysetPageRequest, by caller: Principal,
              context: OperationContext) async throws -> Page<SubscriptionView> {
        try await Database.transaction(client, context) { tx in
            let rows = try await tx.query("""
                SELECT \(unescaped: SubscriptionRepository.columns) FROM subscriptions
                WHERE (\(vendor)::uuid IS NULL OR vendor_id = \(vendor)) AND (\(status?.rawValue)::text IS NULL OR status = \(status?.rawValue))
                  AND \(after: page)
                ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
                """)
            let found = try await SubscriptionRepository.decode(rows)
            try await StaffReads.record(caller, read: "subscriptions", id: vendor, in: tx)
            let items = try await views(found, history: false, in: tx)
            return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
        }
    }

    static let newestFirst = KeysetOrder([.init("created_at", .time, descending: true)], idColumn: "id", idDescending: true)

    /// Views for several subscriptions with three queries in all: the plans, the latest invoices
    /// (with their lines), and, for a single read, the history.
    func views(_ list: [Subscription], history: Bool, in tx: Transaction) async throws -> [SubscriptionView] {
        guard !list.isEmpty else { return [] }
        var plans: [UUID: Plan] = [:]
        let planIds = Array(Set(list.flatMap { [$0.planId] + ($0.pendingPlanId.map { [$0] } ?? []) }))
        for plan in try await workflow.plans.decode(tx.query("SELECT \(unescaped: PlanRepository.columns) FROM plans WHERE id = ANY(\(planIds))")) {
            plans[plan.id] = plan
        }
        let invoiceIds = list.compactMap(\.latestInvoiceId)
        var invoices: [UUID: InvoiceView] = [:]
        if !invoiceIds.isEmpty {
            for invoice in try await workflow.invoices.views(tx.query("""
                SELECT \(unescaped: InvoiceRepository.columns) FROM invoices i WHERE i.id = ANY(\(invoiceIds))
                """), in: tx) {
                invoices[invoice.id] = invoice
            }
        }
        var result: [SubscriptionView] = []
        for s in list {
            guard let plan = plans[s.planId] else { throw ProrationError.planMissing }
            result.append(SubscriptionView(
                id: s.id, vendorId: s.vendorId, plan: plan, pendingPlan: s.pendingPlanId.flatMap { plans[$0] }, status: s.status.rawValue,
                cancelAtPeriodEnd: s.cancelAtPeriodEnd, trialEnd: s.trialEnd, currentPeriodStart: s.currentPeriodStart,
                currentPeriodEnd: s.currentPeriodEnd, pausedUntil: s.pausedUntil, canceledAt: s.canceledAt, endedAt: s.endedAt,
                paymentMethod: PaymentMethodView(id: s.paymentMethod.id, brand: s.paymentMethod.brand, last4: s.paymentMethod.last4),
                latestInvoice: s.latestInvoiceId.flatMap { invoices[$0] }, version: s.version, createdAt: s.createdAt,
                history: history ? try await repository.history(of: s.id, in: tx) : []))
        }
        return result
    }
}
