import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// What a subscription event needs besides the event itself.
struct SubscriptionInput: Sendable {
    var actorId: UUID?
    var note: String?
    /// `upgrade`, `downgrade`.
    var plan: Plan?
    /// `paymentMethodChanged`.
    var paymentMethod: ProviderPaymentMethod?
    /// `pause`: when to resume (at most three months on).
    var resumeAt: Date?
    /// `comp`: free days.
    var freeDays: Int?

    init(actorId: UUID? = nil, note: String? = nil, plan: Plan? = nil, paymentMethod: ProviderPaymentMethod? = nil,
         resumeAt: Date? = nil, freeDays: Int? = nil) {
        self.actorId = actorId
        self.note = note
        self.plan = plan
        self.paymentMethod = paymentMethod
        self.resumeAt = resumeAt
        self.freeDays = freeDays
    }
}

/// A subscription timer's payload: which subscription, and for renewals the period end it was set
/// for (a renewal timer left over from before a change of period is stale and does nothing).
struct SubscriptionTimer: Codable, Sendable {
    var subscriptionId: UUID
    var due: Date
}

struct InvoiceCharge: Codable, Sendable {
    var invoiceId: UUID
}

/// The drafts a finaliser numbers. Without ids (a job stored before ids were given), the oldest
/// waiting drafts, up to a set.
struct FinalizeDrafts: Codable, Sendable {
    var invoiceIds: [UUID]?
}

/// The subscription's process: every change loads the subscription locked, asks the transition
/// table, and carries out the effects in the same transaction (state, invoices, ledger, timers,
/// events). Nothing here calls the provider: charges are jobs (`PaymentCollection`).
struct SubscriptionWorkflow: Sendable {
    static let renew = JobKind<SubscriptionTimer>("billing.renew")
    static let trialEnding = JobKind<SubscriptionTimer>("billing.trial-ending")
    static let incompleteDeadline = JobKind<SubscriptionTimer>("billing.incomplete-deadline")
    static let autoResume = JobKind<SubscriptionTimer>("billing.auto-resume")
    /// Finalises the drafts renewals leave, as a set: a renewal (or a set of them) schedules one
    /// naming its drafts, keyed by its first (so renewals never wait on a shared row), and the
    /// finalisers claimed together number the union of their drafts. Alone in its transaction, so
    /// the year's counter is held briefly.
    static let finalizeDrafts = JobKind<FinalizeDrafts>("billing.finalize-invoices", runsAlone: true)
    /// Charges an open invoice (now, or at a dunning retry); key: the invoice id.
    static let chargeInvoice = JobKind<InvoiceCharge>("billing.charge-invoice", maxAttempts: 12, backoff: .seconds(2), maximumBackoff: .seconds(1800))

    /// How long a first payment may stay unpaid (Stripe's 23 hours).
    static let incompleteWindow: TimeInterval = 23 * 3_600
    /// The trial-ending notice, this long before the trial ends.
    static let trialNotice: TimeInterval = 3 * 86_400
    /// The longest pause.
    static let maximumPauseMonths = 3
    /// Drafts finalised per set: one counter update, one ledger statement, one jobs statement.
    static let finalizeSetSize = 500

    let plans: PlanRepository
    let provider: String
    let dunning: DunningSchedule
    let subscriptions = SubscriptionRepository()
    let invoices = InvoiceRepository()
    let ledger = Ledger()

    // MARK: Subscribing

    /// A new subscription: a trial on the vendor's first subscription to a plan with one;
    /// otherwise `incomplete` with its first invoice charged at once (23 hours to pay).
    func subscribe(vendor: UUID, plan: Plan, customer: String, paymentMethod: ProviderPaymentMethod, in tx: Transaction) async throws -> Subscription {
        let now = tx.now
        let trial = plan.trialDays > 0 ? try await !subscriptions.hasHadSubscription(vendor: vendor, in: tx) : false
        let periodEnd = trial ? now.addingTimeInterval(TimeInterval(plan.trialDays) * 86_400) : plan.periodEnd(from: now)
        var subscription = Subscription(
            id: UUID.v7(now: now), vendorId: vendor, planId: plan.id, pendingPlanId: nil, status: trial ? .trialing : .incomplete,
            cancelAtPeriodEnd: false, trialEnd: trial ? periodEnd : nil, currentPeriodStart: now, currentPeriodEnd: periodEnd,
            pausedUntil: nil, canceledAt: nil, endedAt: nil, provider: provider, customerId: customer, paymentMethod: paymentMethod,
            latestInvoiceId: nil, pastDueSince: nil, version: 1, createdAt: now, updatedAt: now)
        do {
            try await subscriptions.insert(subscription, in: tx)
        } catch where Database.isSQLState(error, .uniqueViolation) {
            throw BillingError.subscriptionExists
        }
        let key = subscription.id.lowercased
        try await tx.schedule(Self.renew, key: key, payload: SubscriptionTimer(subscriptionId: subscription.id, due: periodEnd), at: periodEnd)
        if trial {
            let notice = periodEnd.addingTimeInterval(-Self.trialNotice)
            if notice > now {
                try await tx.schedule(Self.trialEnding, key: key, payload: SubscriptionTimer(subscriptionId: subscription.id, due: notice), at: notice)
            }
        } else {
            let invoice = try await issuePlanInvoice(for: subscription, plan: plan, reason: .subscriptionCreate, in: tx)
            subscription.latestInvoiceId = invoice.id
            try await tx.query("UPDATE subscriptions SET latest_invoice_id = \(invoice.id) WHERE id = \(subscription.id)")
            let deadline = now.addingTimeInterval(Self.incompleteWindow)
            try await tx.schedule(Self.incompleteDeadline, key: key, payload: SubscriptionTimer(subscriptionId: subscription.id, due: deadline), at: deadline)
        }
        try await subscriptions.record(SubscriptionChange(at: now, status: subscription.status.rawValue, event: "created", actorId: vendor, note: plan.code),
                                       of: subscription.id, in: tx)
        try await Obligations.open("subscription", reference: subscription.id, for: [vendor], service: BillingService.name, in: tx)
        try await emitEntitlement(subscription, plan: plan, reason: trial ? "trial_started" : "subscription_incomplete", in: tx)
        return subscription
    }

    // MARK: Events

    /// Applies `event` to the (locked) subscription. A refused pair throws the 409.
    @discardableResult
    func apply(_ event: SubscriptionEvent, to id: UUID, input: SubscriptionInput = SubscriptionInput(), in tx: Transaction) async throws -> Subscription {
        guard let current = try await subscriptions.lock(id, in: tx) else { throw BillingError.subscriptionNotFound }
        return try await apply(event, to: current, input: input, in: tx)
    }

    /// For timers and the provider: applies `event` if the table allows it now; otherwise the
    /// timer or payment is stale (the subscription moved on) and nothing happens.
    @discardableResult
    func applyIfAllowed(_ event: SubscriptionEvent, to id: UUID, input: SubscriptionInput = SubscriptionInput(), in tx: Transaction) async throws -> Subscription? {
        guard let current = try await subscriptions.lock(id, in: tx) else { return nil }
        return try await applyIfAllowed(event, to: current, input: input, in: tx)
    }

    /// The same, on a subscription this transaction already holds locked.
    @discardableResult
    func applyIfAllowed(_ event: SubscriptionEvent, to current: Subscription, input: SubscriptionInput = SubscriptionInput(), in tx: Transaction) async throws -> Subscription? {
        guard (try? SubscriptionStateMachine.transition(from: current.status, on: event)) != nil else {
            tx.logger.info("subscription event not applicable", metadata: [
                "subscription.id": "\(current.id.lowercased)", "subscription.status": "\(current.status.rawValue)", "event": "\(event)"])
            return nil
        }
        return try await apply(event, to: current, input: input, in: tx)
    }

    func apply(_ event: SubscriptionEvent, to current: Subscription, input: SubscriptionInput, in tx: Transaction) async throws -> Subscription {
        let (next, effects) = try SubscriptionStateMachine.transition(from: current.status, on: event)
        let now = tx.now
        let key = current.id.lowercased
        var s = current
        s.status = next
        var notices: [SubscriptionEffect.Notification] = []
        var entitlement = false

        for effect in effects {
            switch effect {
            case .emitEntitlement:
                entitlement = true
            case .startNextPeriod:
                // A resumed subscription starts a fresh period now; a renewal continues the cycle.
                let start = event == .resume ? now : s.currentPeriodEnd
                if let pending = s.pendingPlanId {
                    s.planId = pending
                    s.pendingPlanId = nil
                    entitlement = true
                }
                let plan = try await plan(s.planId, in: tx)
                s.currentPeriodStart = start
                s.currentPeriodEnd = plan.periodEnd(from: start)
                s.pausedUntil = nil
                try await tx.schedule(Self.renew, key: key, payload: SubscriptionTimer(subscriptionId: s.id, due: s.currentPeriodEnd),
                                      at: s.currentPeriodEnd, ifExists: .replace)
            case .restartLapsedPeriod:
                // Paid after its period ran out (suspended past the renewal): a full period from now.
                if s.currentPeriodEnd <= now {
                    let plan = try await plan(s.planId, in: tx)
                    s.currentPeriodStart = now
                    s.currentPeriodEnd = plan.periodEnd(from: now)
                    try await tx.schedule(Self.renew, key: key, payload: SubscriptionTimer(subscriptionId: s.id, due: s.currentPeriodEnd),
                                          at: s.currentPeriodEnd, ifExists: .replace)
                }
            case .invoiceAndCharge:
                let plan = try await plan(s.planId, in: tx)
                if event == .periodEnded, plan.price.amount > 0 {
                    // A renewal: drafted now, numbered and charged with its set by `finalizeDrafts`.
                    s.latestInvoiceId = try await draftPlanInvoice(for: s, plan: plan, in: tx)
                } else {
                    let invoice = try await issuePlanInvoice(for: s, plan: plan, reason: event == .resume ? .subscriptionResume : .subscriptionCycle, in: tx)
                    s.latestInvoiceId = invoice.id
                }
            case .retryOpenInvoice:
                if let method = input.paymentMethod { s.paymentMethod = method }
                // A draft is charged when its set is finalised.
                for invoice in try await invoices.unsettled(of: s.id, in: tx) where invoice.status == InvoiceStatus.open.rawValue {
                    try await tx.schedule(Self.chargeInvoice, key: invoice.id.lowercased, payload: InvoiceCharge(invoiceId: invoice.id),
                                          at: now, ifExists: .replace)
                    try await invoices.setNextAttempt(invoice.id, at: now, in: tx)
                }
            case .scheduleRetry:
                let since = s.pastDueSince ?? now
                s.pastDueSince = since
                if let invoiceId = s.latestInvoiceId, let at = dunning.nextRetry(after: now, firstFailure: since) {
                    try await tx.schedule(Self.chargeInvoice, key: invoiceId.lowercased, payload: InvoiceCharge(invoiceId: invoiceId),
                                          at: at, ifExists: .replace)
                    try await invoices.setNextAttempt(invoiceId, at: at, in: tx)
                }
            case .clearTimers:
                s.pastDueSince = nil
                try await tx.cancel(Self.incompleteDeadline, key: key)
                try await tx.cancel(Self.autoResume, key: key)
                if next.isTerminal {
                    try await tx.cancel(Self.renew, key: key)
                    try await tx.cancel(Self.trialEnding, key: key)
                }
            case .voidOpenInvoices:
                // A period that was served and went unpaid is written off; anything else never happened.
                let served = current.status == .pastDue || current.status == .suspended
                for invoice in try await invoices.unsettled(of: s.id, in: tx) {
                    try await closeInvoice(invoice, writtenOff: served && invoice.reason != InvoiceReason.subscriptionCreate.rawValue, in: tx)
                }
            case .notify(let notice):
                notices.append(notice)
            case .setCancelAtPeriodEnd:
                s.cancelAtPeriodEnd = true
            case .clearCancelAtPeriodEnd:
                s.cancelAtPeriodEnd = false
            case .scheduleAutoResume:
                let latest = Calendar.utc.date(byAdding: .month, value: Self.maximumPauseMonths, to: now) ?? now.addingTimeInterval(91 * 86_400)
                let until = min(input.resumeAt ?? latest, latest)
                s.pausedUntil = until
                try await tx.schedule(Self.autoResume, key: key, payload: SubscriptionTimer(subscriptionId: s.id, due: until), at: until, ifExists: .replace)
            case .invoiceProration:
                guard let newPlan = input.plan else { throw ProrationError.planMissing }
                if current.status != .trialing {
                    let oldPlan = try await plan(s.planId, in: tx)
                    let (credit, debit) = try Proration.change(from: oldPlan.price, to: newPlan.price, periodStart: s.currentPeriodStart,
                                                               periodEnd: s.currentPeriodEnd, at: now)
                    let lines = [
                        InvoiceLine(kind: .prorationCredit, description: "Unused time on \(oldPlan.name)", planId: oldPlan.id,
                                    amount: Money(amount: -credit.amount, currency: credit.currency), periodStart: now, periodEnd: s.currentPeriodEnd),
                        InvoiceLine(kind: .prorationDebit, description: "Remaining time on \(newPlan.name)", planId: newPlan.id,
                                    amount: debit, periodStart: now, periodEnd: s.currentPeriodEnd),
                    ]
                    let invoice = try await issue(for: s, reason: .subscriptionUpdate, lines: lines, periodStart: now, periodEnd: s.currentPeriodEnd, in: tx)
                    s.latestInvoiceId = invoice.id
                }
                s.planId = newPlan.id
                s.pendingPlanId = nil
            case .setPendingPlan:
                s.pendingPlanId = input.plan?.id
            case .grantFreePeriod:
                let days = input.freeDays ?? 0
                s.currentPeriodEnd = max(s.currentPeriodEnd, now).addingTimeInterval(TimeInterval(days) * 86_400)
                try await tx.schedule(Self.renew, key: key, payload: SubscriptionTimer(subscriptionId: s.id, due: s.currentPeriodEnd),
                                      at: s.currentPeriodEnd, ifExists: .replace)
            }
        }
        if event == .paymentMethodChanged, let method = input.paymentMethod { s.paymentMethod = method }
        if next == .canceled || next == .incompleteExpired {
            s.endedAt = now
            if next == .canceled { s.canceledAt = now }
        }
        let saved = try await subscriptions.update(s, from: current, in: tx)
        try await subscriptions.record(SubscriptionChange(at: now, status: next.rawValue, event: event.rawValue, actorId: input.actorId, note: input.note),
                                       of: s.id, in: tx)
        try await stateObligations(from: current, to: saved, in: tx)
        let plan = try await plan(saved.planId, in: tx)
        if entitlement { try await emitEntitlement(saved, plan: plan, reason: Self.reason(event, next: next), in: tx) }
        for notice in notices { try await emitNotice(notice, saved, plan: plan, in: tx) }
        return saved
    }

    /// What keeps the vendor from erasure: the subscription until it ends, and an unpaid invoice
    /// while the subscription is past due or suspended for it (identity's `user_obligations`).
    private func stateObligations(from current: Subscription, to next: Subscription, in tx: Transaction) async throws {
        let service = BillingService.name
        if next.status.isTerminal, !current.status.isTerminal {
            try await Obligations.close("subscription", reference: next.id, for: [next.vendorId], service: service, in: tx)
        }
        let owing: Set<SubscriptionStatus> = [.pastDue, .suspended]
        if owing.contains(current.status), !owing.contains(next.status), let invoice = current.latestInvoiceId {
            try await Obligations.close("invoice", reference: invoice, for: [next.vendorId], service: service, in: tx)
        }
        if owing.contains(next.status), let invoice = next.latestInvoiceId,
           !owing.contains(current.status) || invoice != current.latestInvoiceId {
            try await Obligations.open("invoice", reference: invoice, for: [next.vendorId], service: service, in: tx)
        }
    }

    // MARK: Renewals

    /// Renewal timers, a set at a time (the job runner hands over a batch's): the subscriptions are
    /// locked in id order with one statement. A plain renewal (the table's `startNextPeriod` and
    /// `invoiceAndCharge`, no plan change, a price to pay) is computed here and the set's are
    /// written with one statement per table: periods, history, drafts and their lines, the next
    /// renewal timers, a finaliser. Anything else (a cancellation at the period's end, a pending
    /// plan, a free plan) goes through `apply`, one at a time. A stale timer (the period moved)
    /// does nothing.
    func renew(_ timers: [SubscriptionTimer], in tx: Transaction) async throws {
        let locked = try await subscriptions.lock(timers.map(\.subscriptionId), in: tx)
        let current = Dictionary(locked.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var renewals: [(next: Subscription, current: Subscription)] = []
        var drafts: [InvoiceRepository.Draft] = []
        var seen: Set<UUID> = []
        for timer in timers {
            guard let s = current[timer.subscriptionId], abs(s.currentPeriodEnd.timeIntervalSince(timer.due)) < 0.01,
                  seen.insert(s.id).inserted else { continue }
            let event: SubscriptionEvent = s.cancelAtPeriodEnd ? .periodEndedCanceling : .periodEnded
            guard let (next, draft) = try await plainRenewal(of: s, on: event, in: tx) else {
                try await applyIfAllowed(event, to: s, in: tx)
                continue
            }
            renewals.append((next, s))
            drafts.append(draft)
        }
        guard !renewals.isEmpty else { return }
        try await invoices.insert(drafts, in: tx)
        let renewed = try await subscriptions.update(renewals, in: tx)
        try await subscriptions.record(renewed.map {
            (SubscriptionChange(at: tx.now, status: $0.status.rawValue, event: SubscriptionEvent.periodEnded.rawValue, actorId: nil, note: nil), $0.id)
        }, in: tx)
        try await tx.schedule(Self.renew, renewed.map {
            (key: $0.id.lowercased, payload: SubscriptionTimer(subscriptionId: $0.id, due: $0.currentPeriodEnd), due: $0.currentPeriodEnd)
        }, ifExists: .replace)
        // One finaliser for the set's drafts.
        try await tx.schedule(Self.finalizeDrafts, key: drafts[0].id.lowercased, payload: FinalizeDrafts(invoiceIds: drafts.map(\.id)), at: tx.now)
    }

    /// The renewed subscription and its draft, when `event` is a plain renewal of `s`; nil when it
    /// takes `apply`. The same result as `apply` (a test holds the two paths to it).
    func plainRenewal(of s: Subscription, on event: SubscriptionEvent, in tx: Transaction) async throws -> (Subscription, InvoiceRepository.Draft)? {
        guard event == .periodEnded, s.pendingPlanId == nil,
              let (state, effects) = try? SubscriptionStateMachine.transition(from: s.status, on: event),
              state == s.status, effects == [.startNextPeriod, .invoiceAndCharge] else { return nil }
        let plan = try await plan(s.planId, in: tx)
        guard plan.price.amount > 0 else { return nil }
        var next = s
        next.currentPeriodStart = s.currentPeriodEnd
        next.currentPeriodEnd = plan.periodEnd(from: s.currentPeriodEnd)
        next.pausedUntil = nil
        let draft = try InvoiceRepository.Draft(subscription: next, reason: .subscriptionCycle, lines: [Self.planLine(plan, for: next)],
                                                periodStart: next.currentPeriodStart, periodEnd: next.currentPeriodEnd, at: tx.now)
        next.latestInvoiceId = draft.id
        return (next, draft)
    }

    // MARK: Invoices

    static func planLine(_ plan: Plan, for s: Subscription) -> InvoiceLine {
        InvoiceLine(kind: .plan, description: "\(plan.name) (\(plan.interval)ly)", planId: plan.id, amount: plan.price,
                    periodStart: s.currentPeriodStart, periodEnd: s.currentPeriodEnd)
    }

    /// The plan's invoice for the subscription's current period, charged at once by a job.
    func issuePlanInvoice(for s: Subscription, plan: Plan, reason: InvoiceReason, in tx: Transaction) async throws -> InvoiceView {
        try await issue(for: s, reason: reason, lines: [Self.planLine(plan, for: s)], periodStart: s.currentPeriodStart, periodEnd: s.currentPeriodEnd, in: tx)
    }

    /// The plan's invoice for the renewed period, left as a draft for the set finaliser.
    func draftPlanInvoice(for s: Subscription, plan: Plan, in tx: Transaction) async throws -> UUID {
        let id = try await invoices.draft(subscription: s, reason: .subscriptionCycle, lines: [Self.planLine(plan, for: s)], periodStart: s.currentPeriodStart,
                                          periodEnd: s.currentPeriodEnd, in: tx)
        try await tx.schedule(Self.finalizeDrafts, key: id.lowercased, payload: FinalizeDrafts(invoiceIds: [id]), at: tx.now)
        return id
    }

    /// The set finaliser (Stripe finalises renewal drafts the same way, apart from the renewal):
    /// numbers the drafts named (those still drafts: one voided since is passed over) with one
    /// counter update, in creation order, posts what they owe to the ledger and schedules their
    /// charges, each in one statement. Finalisers without ids take the oldest waiting drafts, up
    /// to a set, and leave a follow-up after a full one.
    func finalizeDrafts(_ jobs: [FinalizeDrafts], in tx: Transaction) async throws {
        let named = jobs.compactMap(\.invoiceIds).flatMap { $0 }
        if !named.isEmpty { try await finalize(try await invoices.finalizeDrafts(named, in: tx), in: tx) }
        if jobs.contains(where: { $0.invoiceIds == nil }) { try await finalizeDrafts(in: tx) }
    }

    /// The oldest waiting drafts, up to `limit`.
    func finalizeDrafts(limit: Int = Self.finalizeSetSize, in tx: Transaction) async throws {
        let finalized = try await invoices.finalizeDrafts(limit: limit, in: tx)
        try await finalize(finalized, in: tx)
        try await tx.cancelWaiting(Self.finalizeDrafts, keys: finalized.map(\.id.lowercased))
        if finalized.count == limit, let last = finalized.last {
            try await tx.schedule(Self.finalizeDrafts, key: "after:\(last.id.lowercased)", payload: FinalizeDrafts(), at: tx.now)
        }
    }

    /// What follows a set's numbering: what they owe posted, their charges scheduled.
    private func finalize(_ finalized: [InvoiceRepository.Finalized], in tx: Transaction) async throws {
        guard !finalized.isEmpty else { return }
        try await ledger.post(finalized.map {
            Ledger.Posting(kind: "invoice_issued", reference: $0.id.lowercased, currency: $0.total.currency, memo: $0.number,
                           lines: [.init(account: .accountsReceivable, amount: $0.total.amount),
                                   .init(account: .subscriptionRevenue, amount: -$0.total.amount)])
        }, in: tx)
        try await tx.schedule(Self.chargeInvoice, finalized.map { (key: $0.id.lowercased, payload: InvoiceCharge(invoiceId: $0.id), due: tx.now) },
                              ifExists: .replace)
        tx.logger.info("invoices finalised", metadata: ["count": "\(finalized.count)"])
    }

    /// Issues an invoice: finalised with its number, owed in the ledger, and charged by a job now.
    /// One for nothing (a free plan, an upgrade at no cost) is paid on the spot.
    func issue(for s: Subscription, reason: InvoiceReason, lines: [InvoiceLine], periodStart: Date, periodEnd: Date, in tx: Transaction) async throws -> InvoiceView {
        let invoice = try await invoices.issue(subscription: s, reason: reason, lines: lines, periodStart: periodStart, periodEnd: periodEnd, in: tx)
        let currency = try Currency(code: invoice.currency)
        try await ledger.post(kind: "invoice_issued", reference: invoice.id.lowercased, currency: currency, memo: invoice.number ?? "",
                              lines: [.init(account: .accountsReceivable, amount: invoice.total.amount),
                                      .init(account: .subscriptionRevenue, amount: -invoice.total.amount)], in: tx)
        if invoice.total.amount <= 0 {
            try await invoices.markPaid(invoice.id, amount: invoice.total, in: tx)
        } else {
            try await tx.schedule(Self.chargeInvoice, key: invoice.id.lowercased, payload: InvoiceCharge(invoiceId: invoice.id), at: tx.now, ifExists: .replace)
            try await invoices.setNextAttempt(invoice.id, at: tx.now, in: tx)
        }
        return invoice
    }

    /// Voids an open invoice (the period was never served) or writes it off (served, unpaid),
    /// reversing what it owed in the ledger, and drops its pending charge.
    func closeInvoice(_ invoice: InvoiceView, writtenOff: Bool, in tx: Transaction) async throws {
        try await invoices.close(invoice.id, as: writtenOff ? .uncollectible : .void, in: tx)
        try await tx.cancel(Self.chargeInvoice, key: invoice.id.lowercased)
        let currency = try Currency(code: invoice.currency)
        try await ledger.post(kind: writtenOff ? "invoice_written_off" : "invoice_voided", reference: invoice.id.lowercased, currency: currency,
                              memo: invoice.number ?? "",
                              lines: [.init(account: writtenOff ? .badDebt : .subscriptionRevenue, amount: invoice.amountDue.amount),
                                      .init(account: .accountsReceivable, amount: -invoice.amountDue.amount)], in: tx)
    }

    // MARK: Events out

    /// `entitlement.changed` with the vendor's next version, from this transaction.
    func emitEntitlement(_ s: Subscription, plan: Plan, reason: String, in tx: Transaction) async throws {
        let rights = s.status.entitlement
        let version = try await tx.first("""
            INSERT INTO vendor_entitlements (vendor_id, version, may_publish, may_list, listing_quota, subscription_status, updated_at)
            VALUES (\(s.vendorId), 1, \(rights.mayPublish), \(rights.mayList), \(plan.listingQuota), \(s.status.rawValue), \(tx.now))
            ON CONFLICT (vendor_id) DO UPDATE SET version = vendor_entitlements.version + 1, may_publish = EXCLUDED.may_publish,
                may_list = EXCLUDED.may_list, listing_quota = EXCLUDED.listing_quota, subscription_status = EXCLUDED.subscription_status,
                updated_at = EXCLUDED.updated_at
            RETURNING version
            """, as: Int64.self) ?? 1
        try await Outbox.emit(BillingEvents.entitlementChanged, EntitlementChangedV1(
            vendorId: s.vendorId, mayPublish: rights.mayPublish, mayList: rights.mayList, listingQuota: plan.listingQuota,
            commissionBps: plan.commissionBps, subscriptionStatus: s.status.rawValue, reason: reason, effectiveAt: tx.now, version: version), in: tx)
    }

    func emitNotice(_ notice: SubscriptionEffect.Notification, _ s: Subscription, plan: Plan, in tx: Transaction) async throws {
        let contract = switch notice {
        case .trialEnding: BillingEvents.trialEnding
        case .paymentFailed: BillingEvents.paymentFailed
        case .suspended: BillingEvents.suspended
        case .reactivated: BillingEvents.reactivated
        case .canceled: BillingEvents.canceled
        }
        let invoice = try await s.latestInvoiceId.asyncMap { try await invoices.load($0, in: tx) } ?? nil
        let owing = invoice.flatMap { $0.status == InvoiceStatus.open.rawValue ? $0 : nil }
        try await Outbox.emit(contract, SubscriptionNoticeV1(
            subscriptionId: s.id, vendorId: s.vendorId, status: s.status.rawValue, planName: plan.name,
            amountDue: owing?.amountDue.amount, currency: owing?.currency, invoiceId: invoice?.id, nextAttemptAt: owing?.nextAttemptAt,
            trialEnd: s.status == .trialing ? s.trialEnd : nil, occurredAt: tx.now), in: tx)
    }

    /// Why the entitlement changed, for listings' logs and the vendor's history.
    static func reason(_ event: SubscriptionEvent, next: SubscriptionStatus) -> String {
        switch event {
        case .invoicePaid: next == .active ? "payment_succeeded" : "payment_received"
        case .paymentFailed: "payment_failed"
        case .retriesExhausted: "subscription_suspended"
        case .incompleteDeadlinePassed: "subscription_expired"
        case .periodEnded: "plan_changed"
        case .periodEndedCanceling, .cancelNow: "subscription_canceled"
        case .pause: "subscription_paused"
        case .resume: "subscription_resumed"
        case .upgrade: "plan_upgraded"
        case .comp: "subscription_comped"
        default: "subscription_updated"
        }
    }

    func plan(_ id: UUID, in tx: Transaction) async throws -> Plan {
        guard let plan = try await plans.plan(id, in: tx) else { throw ProrationError.planMissing }
        return plan
    }
}

enum ProrationError: Error, Equatable {
    case planMissing
}


extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
