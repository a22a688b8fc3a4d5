@testable import Billing
import Contracts
import Foundation
import Logging
@testable import Platform
import PostgresNIO
import Testing

/// A billing service on a fresh schema with the sandbox provider, its jobs run on demand and its
/// business clock moved by the test: a subscription's year lives in a second.
struct BillingHarness: Sendable {
    let client: PostgresClient
    let service: BillingService
    let clock: BusinessClock
    let runner: JobRunner
    static let secret = "whsec_integration"

    var subscriptions: Subscriptions { service.controller.subscriptions }
    var workflow: SubscriptionWorkflow { service.workflow }
    var context: OperationContext { .background(service: "billing", logger: TestInfrastructure.logger, clock: clock) }

    static func run(dunning: String? = nil, _ body: @Sendable (BillingHarness) async throws -> Void) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                let logger = TestInfrastructure.logger
                try await Migrator(client: client, schema: schema, migrations: try BillingService.allMigrations(), logger: logger).migrate()
                var values = ["DATABASE_URL": TestInfrastructure.databaseURL!, "SANDBOX_WEBHOOK_SECRET": secret,
                              // Nobody listens here: deliveries fail and retry; these tests feed webhooks themselves.
                              "SANDBOX_WEBHOOK_URL": "http://127.0.0.1:9/v1/webhooks/sandbox"]
                if let dunning { values["BILLING_DUNNING_SCHEDULE"] = dunning }
                let config = ConfigReader(values: values)
                let settings = try ServiceSettings(serviceName: BillingService.name, defaultPort: BillingService.defaultPort, reader: config)
                let clock = BusinessClock()
                let service = try BillingService(dependencies: ServiceDependencies(settings: settings, config: config, postgres: client,
                                                                                   logger: logger, clock: clock))
                var handlers = service.jobHandlers
                handlers.remove(SandboxProvider.deliver.name)
                let runner = JobRunner(client: client, handlers: handlers, service: schema, clock: clock, batchSize: 50, logger: logger)
                do {
                    try await body(BillingHarness(client: client, service: service, clock: clock, runner: runner))
                } catch let error as PSQLError {
                    // The driver hides the server's message from its description; a failing test needs it.
                    Issue.record("\(String(reflecting: error))")
                    throw error
                }
            }
        }
    }

    /// Runs every job that is due now, until none is.
    func drain() async throws {
        while try await runner.runBatch() > 0 {}
    }

    /// Moves business time forward by `seconds` in steps no longer than `step`, running what falls due at each.
    func advance(_ seconds: TimeInterval, step: TimeInterval = 3_600) async throws {
        var left = seconds
        while left > 0 {
            let move = min(step, left)
            clock.set(offsetMilliseconds: clock.offsetMilliseconds + Int64(move * 1000))
            left -= move
            try await drain()
        }
    }

    func advance(days: Double, step: TimeInterval = 3_600) async throws { try await advance(days * 86_400, step: step) }

    func vendor() -> Principal {
        Principal(userId: UUID.v7(), roles: ["vendor"], emailVerified: true, authenticationMethods: ["pwd"])
    }

    func admin() -> Principal {
        Principal(userId: UUID.v7(), roles: ["admin"], emailVerified: true, authenticationMethods: ["pwd", "otp"])
    }

    /// Subscribes as the route does: customer and card at the provider, then the transaction.
    func subscribe(_ vendor: Principal, plan code: String = "breeder-monthly", card: String = "pm_card_visa") async throws -> SubscriptionView {
        guard let plan = try await service.workflow.plans.onSale(code, context: context) else { throw HarnessError.noPlan(code) }
        let customer = try await subscriptions.customer(for: vendor.userId, context: context)
        let method = try await subscriptions.attach(card, customer: customer, key: "attach:\(vendor.userId):\(UUID())")
        return try await Database.transaction(client, context) { tx in
            let created = try await workflow.subscribe(vendor: vendor.userId, plan: plan, customer: customer, paymentMethod: method, in: tx)
            return try await subscriptions.views([created], history: false, in: tx)[0]
        }
    }

    func changeCard(_ id: UUID, to card: String, by vendor: Principal) async throws -> SubscriptionView {
        let customer = try await subscriptions.customer(for: vendor.userId, context: context)
        let method = try await subscriptions.attach(card, customer: customer, key: "card:\(id):\(UUID())")
        return try await subscriptions.act(.paymentMethod(method), on: id, precondition: nil, by: vendor, context: context)
    }

    func view(_ id: UUID) async throws -> SubscriptionView {
        try await subscriptions.subscription(id, by: admin(), context: context)
    }

    func invoices(of vendor: UUID) async throws -> [InvoiceView] {
        try await Database.transaction(client, context) { tx in
            try await workflow.invoices.views(tx.query("""
                SELECT \(unescaped: InvoiceRepository.columns) FROM invoices i WHERE i.vendor_id = \(vendor) ORDER BY i.created_at, i.id
                """), in: tx)
        }
    }

    /// The entitlements emitted for `vendor`, in version order.
    func entitlements(_ vendor: UUID) async throws -> [EntitlementChangedV1] {
        let rows = try await client.query("""
            SELECT convert_from(data, 'UTF8') FROM outbox WHERE type = \(EventTypes.entitlementChanged) AND key = \(vendor.lowercased) ORDER BY seq
            """, logger: TestInfrastructure.logger)
        var result: [EntitlementChangedV1] = []
        for try await text in rows.decode(String.self) {
            result.append(try JSONDecoder.wire.decode(EntitlementChangedV1.self, from: Data(text.utf8)))
        }
        return result
    }

    func notices(_ subscription: UUID) async throws -> [String] {
        let rows = try await client.query("""
            SELECT type FROM outbox WHERE topic = \(Topics.billingSubscriptions) AND key = \(subscription.lowercased) ORDER BY seq
            """, logger: TestInfrastructure.logger)
        var types: [String] = []
        for try await type in rows.decode(String.self) { types.append(type.replacingOccurrences(of: "marketplace.billing.subscription.", with: "")) }
        return types
    }

    /// What keeps the user from erasure, as billing has stated it to identity: the obligations
    /// opened and not closed since (`kind` and the reference), folded from the privacy events.
    func obligations(_ user: UUID) async throws -> [String] {
        let rows = try await client.query("""
            SELECT type, convert_from(data, 'UTF8') FROM outbox WHERE topic = \(Topics.privacy("billing")) AND key = \(user.lowercased) ORDER BY seq
            """, logger: TestInfrastructure.logger)
        var open: [String] = []
        for try await (type, data) in rows.decode((String, String).self) {
            let obligation = try EventCoding.decoder.decode(UserObligationV1.self, from: Data(data.utf8))
            let label = "\(obligation.kind) \(obligation.reference.lowercased)"
            if type == EventTypes.userObligationOpened("billing") { open.append(label) } else { open.removeAll { $0 == label } }
        }
        return open.sorted()
    }

    func trialBalance() async throws -> Ledger.TrialBalance {
        try await Database.transaction(client, context) { tx in try await workflow.ledger.trialBalance(in: tx) }
    }

    func balance(_ account: Ledger.Account) async throws -> Int64 {
        try await trialBalance().accounts.first { $0.account == account.rawValue }?.balance ?? 0
    }

    enum HarnessError: Error { case noPlan(String) }
}

extension JobHandlers {
    /// Drops a kind (tests that feed webhooks themselves run without the sandbox's deliveries).
    mutating func remove(_ kind: String) { entries[kind] = nil }
}

extension JSONDecoder {
    /// Reads the suite's wire form (RFC 3339 times with milliseconds).
    static var wire: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: text))
            }
            return date
        }
        return decoder
    }
}

/// Each path of a subscription's life, driven by the business clock against a real Postgres and
/// the sandbox provider.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct BillingLifecycleTests {
    @Test func aTrialBecomesActiveAndAYearOfRenewalsIsInvoicedWithoutGaps() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            #expect(created.status == "trialing")
            #expect(created.latestInvoice == nil, "nothing is charged during a trial")
            let trialEnd = try #require(created.trialEnd)
            #expect(abs(trialEnd.timeIntervalSince(created.createdAt) - 14 * 86_400) < 1)
            #expect(try await h.entitlements(vendor.userId).map(\.reason) == ["trial_started"])

            try await h.advance(days: 11.5)
            #expect(try await h.notices(created.id) == ["trial_ending.v1"], "three days before the trial ends")

            try await h.advance(days: 3)
            let active = try await h.view(created.id)
            #expect(active.status == "active")
            #expect(active.latestInvoice?.status == "paid")
            #expect(active.latestInvoice?.total == Money(amount: 2900, currency: .eur))
            #expect(try await h.entitlements(vendor.userId).map(\.mayPublish) == [true, true])

            // A year of monthly renewals, each invoiced and paid, numbered one after another.
            try await h.advance(days: 366, step: 86_400)
            let invoices = try await h.invoices(of: vendor.userId)
            #expect(invoices.count == 13)
            #expect(invoices.allSatisfy { $0.status == "paid" })
            let numbers = invoices.compactMap(\.number)
            let sequence = numbers.compactMap { Int($0.suffix(6)) }
            #expect(numbers.count == 13 && numbers.allSatisfy { $0.hasPrefix("INV-") })
            // Numbers restart each year; within a year they follow one another.
            for (previous, next) in zip(invoices, invoices.dropFirst()) where previous.number?.prefix(8) == next.number?.prefix(8) {
                #expect(Int(next.number!.suffix(6))! == Int(previous.number!.suffix(6))! + 1)
            }
            #expect(Set(sequence).count == sequence.count || numbers.map { $0.prefix(8) }.count > 1)
            let periods = invoices.map { ($0.periodStart, $0.periodEnd) }
            for (previous, next) in zip(periods, periods.dropFirst()) {
                #expect(abs(previous.1.timeIntervalSince(next.0)) < 0.01, "each period starts where the last ended")
            }
            let balance = try await h.trialBalance()
            #expect(balance.currencies.allSatisfy { $0.debits == $0.credits })
            #expect(try await h.balance(.accountsReceivable) == 0, "everything invoiced was collected")
            #expect(try await h.balance(.subscriptionRevenue) == -13 * 2900)
        }
    }

    @Test func aDeclinedCardIsRefusedAndAFailedFirstPaymentExpiresAfter23Hours() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            await #expect(throws: BillingError.cardDeclined(code: "card_declined", message: "Your card was declined.")) {
                _ = try await h.subscribe(vendor, card: "pm_card_chargeDeclined")
            }
            await #expect(throws: BillingError.self) { _ = try await h.subscribe(vendor, card: "pm_card_nonsense") }

            // The first subscription had the trial; the next one is charged at once.
            let first = try await h.subscribe(vendor)
            _ = try await h.subscriptions.act(.cancel(atPeriodEnd: false), on: first.id, precondition: nil, by: vendor, context: h.context)
            let second = try await h.subscribe(vendor, card: "pm_card_chargeCustomerFail")
            #expect(second.status == "incomplete")
            try await h.drain()
            let failed = try await h.view(second.id)
            #expect(failed.status == "incomplete", "the first payment failed; 23 hours to fix it")
            #expect(failed.latestInvoice?.status == "open")
            #expect(failed.latestInvoice?.attemptCount == 1)

            try await h.advance(22 * 3_600)
            #expect(try await h.view(second.id).status == "incomplete")
            try await h.advance(2 * 3_600)
            let expired = try await h.view(second.id)
            #expect(expired.status == "incomplete_expired")
            #expect(expired.latestInvoice?.status == "void")
            #expect(try await h.entitlements(vendor.userId).last?.mayList == false)
            #expect(try await h.balance(.accountsReceivable) == 0, "the voided invoice no longer counts as owed")
            #expect(try await h.balance(.subscriptionRevenue) == 0)
        }
    }

    @Test func aFailedRenewalRunsEveryDunningStepToSuspensionAndPaymentReactivates() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            try await h.advance(days: 14.1)
            #expect(try await h.view(created.id).status == "active")
            _ = try await h.changeCard(created.id, to: "pm_card_chargeCustomerFail", by: vendor)

            // The renewal at the period's end fails: past_due, listings stay, no new publishing.
            let periodEnd = try await h.view(created.id).currentPeriodEnd
            try await h.advance(periodEnd.timeIntervalSince(h.clock.now()) + 60)
            var pastDue = try await h.view(created.id)
            #expect(pastDue.status == "past_due")
            #expect(pastDue.latestInvoice?.attemptCount == 1)
            let unpaid = try #require(pastDue.latestInvoice?.id)
            #expect(try await h.obligations(vendor.userId) == ["invoice \(unpaid.lowercased)", "subscription \(created.id.lowercased)"],
                    "the live subscription and the unpaid invoice keep the vendor from erasure")
            let lapsed = try #require(try await h.entitlements(vendor.userId).last)
            #expect(lapsed.mayPublish == false && lapsed.mayList == true && lapsed.subscriptionStatus == "past_due")

            // Retries 1, 2, 3, 5, 7 and 10 days after the first failure: still past due.
            var attempts: [Int] = []
            for day in 1...10 {
                try await h.advance(days: day == 1 ? 1.01 : 1)
                pastDue = try await h.view(created.id)
                attempts.append(pastDue.latestInvoice?.attemptCount ?? 0)
            }
            #expect(attempts == [2, 3, 4, 4, 5, 5, 6, 6, 6, 7])
            #expect(pastDue.status == "past_due")
            // The eighth try, 14 days on, fails too: suspended, listings hidden.
            try await h.advance(days: 4)
            let suspended = try await h.view(created.id)
            #expect(suspended.status == "suspended")
            #expect(suspended.latestInvoice?.attemptCount == 8)
            #expect(try await h.entitlements(vendor.userId).last?.mayList == false)
            #expect(try await h.notices(created.id) == ["trial_ending.v1"] + Array(repeating: "payment_failed.v1", count: 7) + ["suspended.v1"])

            // A working card: the open invoice is retried at once and the subscription is back.
            _ = try await h.changeCard(created.id, to: "pm_card_visa", by: vendor)
            try await h.drain()
            let back = try await h.view(created.id)
            #expect(back.status == "active")
            #expect(back.latestInvoice?.status == "paid")
            #expect(back.currentPeriodEnd > h.clock.now(), "the lapsed period restarted from the payment")
            #expect(try await h.entitlements(vendor.userId).last?.mayList == true)
            #expect(try await h.notices(created.id).last == "reactivated.v1")
            #expect(try await h.balance(.accountsReceivable) == 0)
            #expect(try await h.obligations(vendor.userId) == ["subscription \(created.id.lowercased)"], "the invoice paid, only the subscription holds")
        }
    }

    @Test func pauseStopsCollectionAndListingUntilResumed() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            try await h.advance(days: 14.1)
            let paused = try await h.subscriptions.act(.pause(resumeAt: nil), on: created.id, precondition: nil, by: vendor, context: h.context)
            #expect(paused.status == "paused")
            #expect(try await h.entitlements(vendor.userId).last?.mayList == false)
            let limit = try #require(paused.pausedUntil)
            #expect(limit.timeIntervalSince(h.clock.now()) <= 92 * 86_400, "at most three months")

            try await h.advance(days: 40, step: 86_400)
            #expect(try await h.invoices(of: vendor.userId).count == 1, "nothing is invoiced while paused")
            let resumed = try await h.subscriptions.act(.resume, on: created.id, precondition: nil, by: vendor, context: h.context)
            #expect(resumed.status == "active")
            #expect(abs(resumed.currentPeriodStart.timeIntervalSince(h.clock.now())) < 5, "a fresh period from the resume")
            try await h.drain()
            let invoices = try await h.invoices(of: vendor.userId)
            #expect(invoices.map(\.reason) == ["subscription_cycle", "subscription_resume"])
            #expect(invoices.last?.status == "paid")

            // Paused and forgotten: it resumes by itself after three months.
            _ = try await h.subscriptions.act(.pause(resumeAt: nil), on: created.id, precondition: nil, by: vendor, context: h.context)
            try await h.advance(days: 93, step: 86_400)
            #expect(try await h.view(created.id).status == "active")
        }
    }

    @Test func anUpgradeIsProratedNowAndADowngradeWaitsForThePeriodsEnd() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor, plan: "hobby-monthly")
            try await h.advance(days: 14.1)
            try await h.advance(days: 10)
            let before = try await h.view(created.id)
            guard let breeder = try await h.workflow.plans.onSale("breeder-monthly", context: h.context),
                  let hobby = try await h.workflow.plans.onSale("hobby-monthly", context: h.context) else { Issue.record("plans"); return }
            let upgraded = try await h.subscriptions.act(.changePlan(breeder), on: created.id, precondition: nil, by: vendor, context: h.context)
            #expect(upgraded.plan.code == "breeder-monthly")
            let proration = try #require(upgraded.latestInvoice)
            #expect(proration.reason == "subscription_update")
            #expect(proration.lines.map(\.kind) == [.prorationCredit, .prorationDebit])
            let credit = -proration.lines[0].amount.amount
            let debit = proration.lines[1].amount.amount
            #expect(credit > 0 && credit < 900 && debit > 0 && debit < 2900)
            #expect(proration.total.amount == debit - credit)
            // About two thirds of the period were left: the debit is about two thirds of the new price.
            let left = before.currentPeriodEnd.timeIntervalSince(h.clock.now()) / before.currentPeriodEnd.timeIntervalSince(before.currentPeriodStart)
            #expect(abs(Double(debit) - 2900 * left) <= 1)
            #expect(try await h.entitlements(vendor.userId).last?.listingQuota == 25)
            try await h.drain()
            #expect(try await h.view(created.id).latestInvoice?.status == "paid")

            let downgraded = try await h.subscriptions.act(.changePlan(hobby), on: created.id, precondition: nil, by: vendor, context: h.context)
            #expect(downgraded.plan.code == "breeder-monthly" && downgraded.pendingPlan?.code == "hobby-monthly")
            try await h.advance(downgraded.currentPeriodEnd.timeIntervalSince(h.clock.now()) + 60)
            let renewed = try await h.view(created.id)
            #expect(renewed.plan.code == "hobby-monthly" && renewed.pendingPlan == nil)
            #expect(renewed.latestInvoice?.total.amount == 900)
            #expect(try await h.entitlements(vendor.userId).last?.listingQuota == 5)
        }
    }

    @Test func cancelingAtThePeriodsEndEndsItThereAndResumeKeepsIt() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            #expect(try await h.obligations(vendor.userId) == ["subscription \(created.id.lowercased)"])
            try await h.advance(days: 14.1)
            let flagged = try await h.subscriptions.act(.cancel(atPeriodEnd: true), on: created.id, precondition: nil, by: vendor, context: h.context)
            #expect(flagged.status == "active" && flagged.cancelAtPeriodEnd)
            let kept = try await h.subscriptions.act(.resume, on: created.id, precondition: nil, by: vendor, context: h.context)
            #expect(!kept.cancelAtPeriodEnd)
            _ = try await h.subscriptions.act(.cancel(atPeriodEnd: true), on: created.id, precondition: nil, by: vendor, context: h.context)
            try await h.advance(flagged.currentPeriodEnd.timeIntervalSince(h.clock.now()) + 60)
            let ended = try await h.view(created.id)
            #expect(ended.status == "canceled")
            #expect(try await h.invoices(of: vendor.userId).count == 1, "no invoice for a period that will not come")
            #expect(try await h.entitlements(vendor.userId).last?.mayList == false)
            #expect(ended.history.map(\.status).last == "canceled")
            #expect(try await h.obligations(vendor.userId) == [], "an ended subscription keeps nobody from erasure")
            // Another subscription is possible now, and the 409 while one is live.
            let again = try await h.subscribe(vendor)
            await #expect(throws: BillingError.subscriptionExists) { _ = try await h.subscribe(vendor) }
            #expect(again.status == "incomplete", "a second subscription has no trial")
        }
    }

    @Test func aStrangerSeesNothingAndAnAdminCompsAFreePeriod() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            let stranger = h.vendor()
            await #expect(throws: BillingError.subscriptionNotFound) {
                _ = try await h.subscriptions.subscription(created.id, by: stranger, context: h.context)
            }
            await #expect(throws: BillingError.subscriptionNotFound) {
                _ = try await h.subscriptions.act(.pause(resumeAt: nil), on: created.id, precondition: nil, by: stranger, context: h.context)
            }
            let admin = h.admin()
            await #expect(throws: BillingError.notYourSubscription) {
                _ = try await h.subscriptions.act(.pause(resumeAt: nil), on: created.id, precondition: nil, by: admin, context: h.context)
            }
            await #expect(throws: BillingError.adminOnly) {
                _ = try await h.subscriptions.act(.comp(days: 30), on: created.id, precondition: nil, by: vendor, context: h.context)
            }
            try await h.advance(days: 14.1)
            let active = try await h.view(created.id)
            let comped = try await h.subscriptions.act(.comp(days: 30), on: created.id, precondition: nil, by: admin, note: "apology for an outage",
                                                       context: h.context)
            #expect(abs(comped.currentPeriodEnd.timeIntervalSince(active.currentPeriodEnd) - 30 * 86_400) < 1)
            #expect(comped.history.last?.note == "apology for an outage")
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM staff_reads WHERE actor_id = \(admin.userId)") == 0)
            _ = try await h.subscriptions.subscription(created.id, by: admin, context: h.context)
            _ = try await h.subscriptions.subscription(created.id, by: vendor, context: h.context)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM staff_reads WHERE actor_id = \(admin.userId)") == 1,
                    "an admin's read is recorded; the owner's own is not")
            await #expect(throws: Problem.self) {
                _ = try await h.subscriptions.act(.resume, on: created.id, precondition: nil, by: vendor, context: h.context)
            }
            await #expect(throws: Problem.self) {
                _ = try await h.subscriptions.act(.cancel(atPeriodEnd: false), on: created.id,
                                                  precondition: .versions([1]), by: vendor, context: h.context)
            }
        }
    }
}

/// Renewals due together: drafted by each renewal, numbered and charged as a set by one job, and
/// the ledger's checks as the database makes them.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct BillingRenewalSetTests {
    @Test func renewalsDueTogetherAreNumberedAsASetInOrderWithoutGapsAndChargedOnce() async throws {
        try await BillingHarness.run { h in
            var created: [SubscriptionView] = []
            for _ in 0..<23 { created.append(try await h.subscribe(h.vendor())) }
            // The trials end together: three renew alone (a finaliser each), twenty as one set (one
            // finaliser for all); each leaves a draft, and nothing is numbered yet.
            h.clock.set(offsetMilliseconds: Int64(14.5 * 86_400 * 1000))
            try await Database.transaction(h.client, h.context) { tx in
                for subscription in created.prefix(3) { try await h.workflow.apply(.periodEnded, to: subscription.id, in: tx) }
                try await h.workflow.renew(created.dropFirst(3).map { SubscriptionTimer(subscriptionId: $0.id, due: $0.currentPeriodEnd) }, in: tx)
            }
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM invoices WHERE status = 'draft' AND number IS NULL") == 23)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM jobs WHERE kind = 'billing.finalize-invoices'") == 4,
                    "a finaliser for each single draft and one for the set, none shared")
            #expect(try await TestInfrastructure.scalar(h.client, """
                SELECT max(jsonb_array_length(payload -> 'invoiceIds')) FROM jobs WHERE kind = 'billing.finalize-invoices'
                """) == 20, "the set's finaliser names its twenty drafts")

            // A finaliser stored without ids (before they were given) takes the oldest drafts, up to
            // its limit: numbered 1–10 in creation order, owed in the ledger, charges scheduled, a
            // follow-up left for the drafts beyond the full set.
            try await Database.transaction(h.client, h.context) { tx in try await h.workflow.finalizeDrafts(limit: 10, in: tx) }
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM invoices WHERE status = 'open'") == 10)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT max(last_number) FROM invoice_number_counters") == 10)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM jobs WHERE kind = 'billing.charge-invoice'") == 10)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM ledger_entries WHERE kind = 'invoice_issued'") == 10)
            #expect(try await TestInfrastructure.scalar(h.client, """
                SELECT count(*) FROM jobs WHERE kind = 'billing.finalize-invoices' AND key LIKE 'after:%'
                """) == 1)

            try await h.drain()
            // The named finalisers pass over what is no longer a draft: each number is used once.
            let rows = try await h.client.query("""
                SELECT number, status FROM invoices WHERE reason = 'subscription_cycle' ORDER BY number
                """, logger: TestInfrastructure.logger)
            var numbers: [String] = []
            for try await (number, status) in rows.decode((String?, String).self) {
                #expect(status == "paid")
                numbers.append(number ?? "none")
            }
            let year = Calendar.utc.component(.year, from: h.clock.now())
            #expect(numbers == (1...23).map { InvoiceRepository.number($0, year: year) }, "gapless")
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT max(last_number) FROM invoice_number_counters") == 23)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM payments WHERE status = 'succeeded'") == 23,
                    "each charged once")
            #expect(try await h.balance(.accountsReceivable) == 0)
            #expect(try await h.balance(.subscriptionRevenue) == -23 * 2900)
        }
    }

    /// What one subscription's renewal or charge left, without ids and the moment it ran, its
    /// times counted from the subscription's creation: to hold the set path to the single one.
    struct RenewalOutcome: Equatable {
        var status: String, planId: UUID, pendingPlanId: UUID?, periodStart: TimeInterval, periodEnd: TimeInterval, version: Int, ended: Bool
        var history: [String]
        var invoices: [String]
        var timers: [String]
    }

    func outcome(_ h: BillingHarness, _ id: UUID) async throws -> RenewalOutcome {
        let s = try #require(try await Database.transaction(h.client, h.context) { tx in try await h.workflow.subscriptions.load(id, in: tx) })
        let history = try await Database.transaction(h.client, h.context) { tx in try await h.workflow.subscriptions.history(of: id, in: tx) }
        var invoices: [String] = []
        for try await (reason, status, total, start, end, lines) in try await h.client.query("""
            SELECT i.reason, i.status, i.total, i.period_start, i.period_end,
                   (SELECT string_agg(l.kind || ':' || l.description || ':' || l.amount || ':' || (l.period_start = i.period_start AND l.period_end = i.period_end), ','
                                       ORDER BY l.position)
                    FROM invoice_lines l WHERE l.invoice_id = i.id)
            FROM invoices i WHERE i.subscription_id = \(id) ORDER BY i.created_at, i.id
            """, logger: TestInfrastructure.logger).decode((String, String, Int64, Date, Date, String?).self) {
            invoices.append("\(reason) \(status) \(total) \(start.timeIntervalSince(s.createdAt)) \(end.timeIntervalSince(s.createdAt)) [\(lines ?? "")]")
        }
        var timers: [String] = []
        for try await (kind, due) in try await h.client.query("""
            SELECT kind, due_at FROM jobs WHERE key = \(id.lowercased) ORDER BY kind
            """, logger: TestInfrastructure.logger).decode((String, Date).self) {
            timers.append("\(kind) \(due.timeIntervalSince(s.createdAt))")
        }
        return RenewalOutcome(status: s.status.rawValue, planId: s.planId, pendingPlanId: s.pendingPlanId, periodStart: s.currentPeriodStart.timeIntervalSince(s.createdAt),
                              periodEnd: s.currentPeriodEnd.timeIntervalSince(s.createdAt), version: s.version, ended: s.endedAt != nil,
                              history: history.map { "\($0.status) \($0.event) \($0.actorId == nil) \($0.note ?? "")" }, invoices: invoices, timers: timers)
    }

    @Test func aSetOfRenewalsLeavesWhatEachRenewedAloneWouldHave() async throws {
        try await BillingHarness.run { h in
            guard let hobby = try await h.workflow.plans.onSale("hobby-monthly", context: h.context) else { throw BillingHarness.HarnessError.noPlan("hobby-monthly") }
            // Twins of four cases: a plain renewal, one set to cancel at the period's end, one with a
            // downgrade pending, and a stale timer. One of each pair renews alone, the other in a set;
            // the twin is a copy of the rows (subscription, history, timers) under new ids.
            var alone: [(SubscriptionView, Principal)] = []
            var inSet: [(SubscriptionView, Principal)] = []
            for index in 0..<4 {
                let vendor = h.vendor()
                let created = try await h.subscribe(vendor)
                if index == 1 { _ = try await h.subscriptions.act(.cancel(atPeriodEnd: true), on: created.id, precondition: nil, by: vendor, context: h.context) }
                if index == 2 { _ = try await h.subscriptions.act(.changePlan(hobby), on: created.id, precondition: nil, by: vendor, context: h.context) }
                let copy = UUID()
                try await h.client.query("""
                    INSERT INTO subscriptions SELECT \(copy), gen_random_uuid(), plan_id, pending_plan_id, status, cancel_at_period_end, trial_end,
                        current_period_start, current_period_end, paused_until, canceled_at, ended_at, provider, customer_id, payment_method_id,
                        payment_method_brand, payment_method_last4, latest_invoice_id, past_due_since, version, created_at, updated_at
                    FROM subscriptions WHERE id = \(created.id);
                    """, logger: TestInfrastructure.logger)
                try await h.client.query("""
                    INSERT INTO subscription_history (subscription_id, at, status, event, actor_id, note)
                    SELECT \(copy), at, status, event, actor_id, note FROM subscription_history WHERE subscription_id = \(created.id) ORDER BY id
                    """, logger: TestInfrastructure.logger)
                try await h.client.query("""
                    INSERT INTO jobs (id, kind, key, payload, due_at)
                    SELECT gen_random_uuid(), kind, \(copy.lowercased), jsonb_set(payload, '{subscriptionId}', to_jsonb(\(copy.lowercased)::text)), due_at
                    FROM jobs WHERE key = \(created.id.lowercased)
                    """, logger: TestInfrastructure.logger)
                alone.append((created, vendor))
                inSet.append((try await h.view(copy), vendor))
            }
            h.clock.set(offsetMilliseconds: Int64(14.5 * 86_400 * 1000))
            func timer(_ s: SubscriptionView, _ index: Int) -> SubscriptionTimer {
                SubscriptionTimer(subscriptionId: s.id, due: index == 3 ? s.currentPeriodEnd.addingTimeInterval(-60) : s.currentPeriodEnd)
            }
            try await Database.transaction(h.client, h.context) { tx in
                for (index, (s, _)) in alone.enumerated() { try await h.workflow.renew([timer(s, index)], in: tx) }
                try await h.workflow.renew(inSet.enumerated().map { timer($0.element.0, $0.offset) }, in: tx)
            }
            for index in 0..<4 {
                let single = try await outcome(h, alone[index].0.id)
                let set = try await outcome(h, inSet[index].0.id)
                #expect(single == set, "case \(index)")
            }
            // And they did renew: the plain one has a draft for its next period, the canceled one ended.
            let plain = try await outcome(h, inSet[0].0.id)
            #expect(plain.invoices.count == 1 && plain.invoices[0].hasPrefix("subscription_cycle draft 2900"))
            #expect(plain.history.last?.contains("renewed") == true)
            #expect(try await outcome(h, inSet[1].0.id).ended)
            #expect(try await outcome(h, inSet[2].0.id).planId == hobby.id)
            #expect(try await outcome(h, inSet[3].0.id).version == inSet[3].0.version, "a stale timer changes nothing")
            // A set leaves one finaliser for its plain renewals' drafts; the drafts are all finalised by it.
            try await h.drain()
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM invoices WHERE status = 'draft'") == 0)
        }
    }

    @Test func aSetOfChargesLeavesWhatEachChargedAloneWouldHave() async throws {
        try await BillingHarness.run { h in
            // Three cases, twice each: an active subscription's renewal (paid: the plain path), a
            // trial's first invoice (paid: the subscription becomes active), a trial whose card fails.
            var active: [SubscriptionView] = []
            for _ in 0..<2 { active.append(try await h.subscribe(h.vendor())) }
            try await h.advance(days: 14.5)
            var trial: [SubscriptionView] = []
            var failing: [SubscriptionView] = []
            for _ in 0..<2 {
                trial.append(try await h.subscribe(h.vendor()))
                failing.append(try await h.subscribe(h.vendor(), card: "pm_card_chargeCustomerFail"))
            }
            var all: [SubscriptionView] = []
            for s in active + trial + failing { all.append(try await h.view(s.id)) }
            #expect(all.prefix(2).allSatisfy { $0.status == "active" })
            // Renewed and finalised by hand, so that the charges wait for the test.
            try await Database.transaction(h.client, h.context) { tx in
                try await h.workflow.renew(all.map { SubscriptionTimer(subscriptionId: $0.id, due: $0.currentPeriodEnd) }, in: tx)
                try await h.workflow.finalizeDrafts(in: tx)
            }
            var invoices: [InvoiceView] = []
            for s in all { invoices.append(try #require(try await h.view(s.id).latestInvoice)) }
            #expect(invoices.allSatisfy { $0.status == "open" })
            try await Database.transaction(h.client, h.context) { tx in
                try await h.service.collection.charge([invoices[0].id, invoices[2].id, invoices[4].id], in: tx)
            }
            for index in [1, 3, 5] {
                try await Database.transaction(h.client, h.context) { tx in try await h.service.collection.charge([invoices[index].id], in: tx) }
            }
            for (set, single) in [(0, 1), (2, 3), (4, 5)] {
                let (a, b) = (try await outcome(h, all[set].id), try await outcome(h, all[single].id))
                #expect(a == b, "case \(set / 2)")
            }
            var after: [SubscriptionView] = []
            for s in all { after.append(try await h.view(s.id)) }
            #expect(after[0].status == "active" && after[0].version == all[0].version + 1, "renewed once; the payment changed nothing more")
            #expect(after[0].latestInvoice?.status == "paid" && after[0].history.last?.event == "paid")
            #expect(after[2].status == "active" && after[2].latestInvoice?.status == "paid")
            #expect(after[4].status == "past_due" && after[4].latestInvoice?.status == "open" && after[4].latestInvoice?.nextAttemptAt != nil)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM jobs WHERE kind = 'billing.charge-invoice'") == 2,
                    "the two failures' retries; the paid ones' charges are gone")
            #expect(try await h.balance(.accountsReceivable) == 2 * 2900, "the failing pair still owes")
        }
    }

    @Test func theSandboxChargesASetAndAKeySeenBeforeAnswersWithItsFirstIntent() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let customer = try await h.subscriptions.customer(for: vendor.userId, context: h.context)
            let visa = try await h.subscriptions.attach("pm_card_visa", customer: customer, key: "v:\(vendor.userId)")
            let failing = try await h.subscriptions.attach("pm_card_chargeCustomerFail", customer: customer, key: "f:\(vendor.userId)")
            func request(_ method: String, _ amount: Int64 = 2900) -> ChargeRequest {
                ChargeRequest(amount: Money(amount: amount, currency: .eur), customer: customer, paymentMethod: method, description: "set",
                              metadata: ["n": method])
            }
            let provider = h.service.provider
            let first = try await provider.charge([(request(visa.id), "k1"), (request(failing.id), "k2"), (request("pm_unknown"), "k3"),
                                                   (request(visa.id, 0), "k4")])
            let paid = try first[0].get()
            #expect(paid.status == .succeeded && paid.fee.amount == SandboxProvider.fee(on: 2900) && paid.metadata == ["n": visa.id])
            let declined = try first[1].get()
            #expect(declined.status == .requiresPaymentMethod && declined.failureCode == "card_declined")
            #expect(first[2] == .failure(.invalidRequest("No such PaymentMethod: 'pm_unknown' for this customer")))
            guard case .failure(.invalidRequest) = first[3] else { Issue.record("a zero amount is refused: \(first[3])"); return }
            // Asked again with the same keys (a retry after a rollback): the same intents, nothing new.
            let again = try await provider.charge([(request(failing.id), "k2"), (request(visa.id), "k1")])
            #expect(try again[0].get() == declined)
            let repeated = try again[1].get()
            #expect(repeated == paid, "\(repeated) \(paid)")
            #expect(try await provider.paymentIntent(paid.id) == paid, "what the set answered is what the provider holds")
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM sandbox_payment_intents") == 2)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM sandbox_events") == 2, "one event per intent made")
        }
    }

    @Test func aDraftWhoseSubscriptionEndsBeforeItsSetIsVoidedUnnumberedAndNeverCharged() async throws {
        try await BillingHarness.run { h in
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            h.clock.set(offsetMilliseconds: Int64(14.5 * 86_400 * 1000))
            let renewed = try await Database.transaction(h.client, h.context) { tx in
                try await h.workflow.apply(.periodEnded, to: created.id, in: tx)
            }
            _ = try await h.subscriptions.act(.cancel(atPeriodEnd: false), on: created.id, precondition: nil, by: vendor, context: h.context)
            try await h.drain()
            let invoice = try #require(try await Database.transaction(h.client, h.context) { tx in
                try await h.workflow.invoices.load(renewed.latestInvoiceId!, in: tx)
            })
            #expect(invoice.status == "void")
            #expect(invoice.number == nil)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM payments") == 0)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM invoice_number_counters") == 0)
            #expect(try await h.balance(.accountsReceivable) == 0)
        }
    }

    @Test func theDatabaseRefusesAnUnbalancedEntryAndAPostingCountsOnce() async throws {
        try await BillingHarness.run { h in
            let ledger = h.workflow.ledger
            let posting = Ledger.Posting(kind: "test", reference: "r1", currency: .eur, memo: "",
                                         lines: [.init(account: .providerBalance, amount: 500), .init(account: .subscriptionRevenue, amount: -500)])
            let other = Ledger.Posting(kind: "test", reference: "r2", currency: .eur, memo: "",
                                       lines: [.init(account: .providerBalance, amount: 70), .init(account: .subscriptionRevenue, amount: -70)])
            let (first, again) = try await Database.transaction(h.client, h.context) { tx async throws -> (Int, Int) in
                (try await ledger.post([posting, other, posting], in: tx), try await ledger.post([posting, other], in: tx))
            }
            #expect(first == 2)
            #expect(again == 0, "made once, whatever the retries")
            await #expect(throws: Ledger.LedgerError.unbalanced(1)) {
                try await Database.transaction(h.client, h.context) { tx in
                    try await ledger.post(kind: "test", reference: "r3", currency: .eur, memo: "",
                                          lines: [.init(account: .providerBalance, amount: 2), .init(account: .subscriptionRevenue, amount: -1)], in: tx)
                }
            }
            // Written behind the ledger's back, an unbalanced line is refused by the database itself.
            let entry = try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM ledger_entries")
            #expect(entry == 2)
            await #expect(throws: PSQLError.self) {
                try await h.client.query("""
                    INSERT INTO ledger_lines (entry_id, position, account, debit, credit)
                    SELECT id, 9, 'provider_balance', 1, 0 FROM ledger_entries WHERE reference = 'r1'
                    """, logger: TestInfrastructure.logger)
            }
            let balance = try await h.trialBalance()
            #expect(balance.currencies == [.init(currency: "EUR", debits: 570, credits: 570)])
        }
    }
}

/// Webhooks: signatures, redeliveries, storms and disorder. Each set-up leaves invoices whose two
/// attempts (a failure, then a success) exist only at the provider, so webhooks are the only way
/// billing learns of them.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct BillingWebhookTests {
    struct Outcome: Hashable {
        var subscription: String
        var invoice: String
        var payments: Int64
        var postings: Int64
    }

    /// `count` subscriptions, each with an open renewal invoice and two attempts made at the provider;
    /// answers each subscription's id with its events' bodies, failure first.
    func prepare(_ h: BillingHarness, count: Int) async throws -> [(UUID, [String])] {
        var prepared: [(UUID, [String])] = []
        for _ in 0..<count {
            let vendor = h.vendor()
            let created = try await h.subscribe(vendor)
            let invoice = try await Database.transaction(h.client, h.context) { tx in
                let renewed = try await h.workflow.apply(.periodEnded, to: created.id, in: tx)
                // The renewal's draft is finalised (as its set would be), but its own charge is left
                // out: the attempts below are made behind billing's back.
                try await h.workflow.finalizeDrafts(in: tx)
                try await tx.cancel(SubscriptionWorkflow.chargeInvoice, key: renewed.latestInvoiceId!.lowercased)
                try await tx.query("UPDATE invoices SET attempt_count = 2 WHERE id = \(renewed.latestInvoiceId!)")
                return try #require(try await h.workflow.invoices.load(renewed.latestInvoiceId!, in: tx))
            }
            let customer = try await h.subscriptions.customer(for: vendor.userId, context: h.context)
            let failing = try await h.subscriptions.attach("pm_card_chargeCustomerFail", customer: customer, key: "f:\(vendor.userId)")
            let working = try await h.subscriptions.attach("pm_card_visa", customer: customer, key: "w:\(vendor.userId)")
            var ids: [String] = []
            for (attempt, method) in [(1, failing), (2, working)] {
                let intent = try await h.service.provider.charge(
                    ChargeRequest(amount: invoice.total, customer: customer, paymentMethod: method.id, description: "storm",
                                  metadata: ["invoice_id": invoice.id.lowercased, "attempt": String(attempt)]),
                    idempotencyKey: "storm:\(invoice.id):\(attempt)")
                ids.append(intent.id)
            }
            var bodies: [String] = []
            for id in ids {
                let rows = try await h.client.query("""
                    SELECT body FROM sandbox_events WHERE body::jsonb -> 'data' -> 'object' ->> 'id' = \(id)
                    """, logger: TestInfrastructure.logger)
                for try await body in rows.decode(String.self) { bodies.append(body) }
            }
            prepared.append((created.id, bodies))
        }
        return prepared
    }

    func deliver(_ h: BillingHarness, _ body: String, signedAt: Date = Date()) async throws -> WebhookIngestion.Receipt {
        let bytes = Array(body.utf8)
        let header = WebhookSignature(secret: BillingHarness.secret).header(for: bytes, at: signedAt)
        return try await h.service.controller.webhooks.receive(body: bytes, signature: header, context: h.context)
    }

    func outcome(_ h: BillingHarness, _ subscription: UUID) async throws -> Outcome {
        let view = try await h.view(subscription)
        let invoice = try #require(view.latestInvoice)
        return Outcome(
            subscription: view.status, invoice: invoice.status,
            payments: try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM payments WHERE invoice_id = \(invoice.id)"),
            postings: try await TestInfrastructure.scalar(h.client, """
                SELECT count(*) FROM ledger_entries e JOIN payments p ON p.intent_id = e.reference
                WHERE e.kind = 'invoice_payment' AND p.invoice_id = \(invoice.id)
                """))
    }

    @Test func aBadOrStaleSignatureIsRefusedAndNothingIsStored() async throws {
        try await BillingHarness.run { h in
            let (_, bodies) = try #require(try await prepare(h, count: 1).first)
            let body = Array(bodies[1].utf8)
            let ingestion = h.service.controller.webhooks
            let wrongSecret = WebhookSignature(secret: "whsec_other").header(for: body, at: Date())
            let stale = WebhookSignature(secret: BillingHarness.secret).header(for: body, at: Date().addingTimeInterval(-301))
            let fresh = WebhookSignature(secret: BillingHarness.secret).header(for: body, at: Date().addingTimeInterval(-299))
            for header in [wrongSecret, stale, "t=\(Int(Date().timeIntervalSince1970)),v1=00", "", "garbage"] as [String?] + [nil] {
                await #expect(throws: BillingError.self, "\(header ?? "no header")") {
                    _ = try await ingestion.receive(body: body, signature: header, context: h.context)
                }
            }
            var tampered = body
            tampered[tampered.count / 2] ^= 0x01
            await #expect(throws: BillingError.self) { _ = try await ingestion.receive(body: tampered, signature: fresh, context: h.context) }
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM webhook_events") == 0)
            #expect(try await ingestion.receive(body: body, signature: fresh, context: h.context) == .init(received: true, duplicate: false),
                    "299 seconds old is within the tolerance")
        }
    }

    @Test func theSameEventDeliveredAHundredTimesAtOnceIsAppliedOnce() async throws {
        try await BillingHarness.run { h in
            let (subscription, bodies) = try #require(try await prepare(h, count: 1).first)
            let success = bodies[1]
            let receipts = try await withThrowingTaskGroup(of: WebhookIngestion.Receipt.self) { group in
                for _ in 0..<100 { group.addTask { try await deliver(h, success) } }
                var all: [WebhookIngestion.Receipt] = []
                for try await receipt in group { all.append(receipt) }
                return all
            }
            #expect(receipts.filter { !$0.duplicate }.count == 1)
            #expect(receipts.count == 100)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM jobs WHERE kind = 'billing.reconcile-payment-intent'") == 1)
            try await h.drain()
            #expect(try await outcome(h, subscription) == Outcome(subscription: "active", invoice: "paid", payments: 1, postings: 1))
            let balance = try await h.trialBalance()
            #expect(balance.currencies.allSatisfy { $0.debits == $0.credits })
        }
    }

    @Test func aRedeliveryHealsAnEventStoredWhoseReReadWasNeverQueued() async throws {
        try await BillingHarness.run { h in
            let (subscription, bodies) = try #require(try await prepare(h, count: 1).first)
            let success = bodies[1]
            // As if the process died between storing the event and queueing its re-read (no 2xx went back).
            #expect(try await deliver(h, success) == .init(received: true, duplicate: false))
            try await h.client.query("DELETE FROM jobs WHERE kind = 'billing.reconcile-payment-intent'", logger: TestInfrastructure.logger)
            // The provider delivers it again: known, still unapplied, so the re-read is queued.
            #expect(try await deliver(h, success) == .init(received: true, duplicate: true))
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM jobs WHERE kind = 'billing.reconcile-payment-intent'") == 1)
            try await h.drain()
            #expect(try await outcome(h, subscription) == Outcome(subscription: "active", invoice: "paid", payments: 1, postings: 1))
            // Once applied, a further redelivery queues nothing.
            #expect(try await deliver(h, success) == .init(received: true, duplicate: true))
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM jobs WHERE kind = 'billing.reconcile-payment-intent'") == 0)
        }
    }

    @Test func aShuffledStormWithDuplicatesEndsWhereACleanInOrderRunDoes() async throws {
        try await BillingHarness.run { h in
            let clean = try await prepare(h, count: 50)
            let stormy = try await prepare(h, count: 50)

            for (_, bodies) in clean {
                for body in bodies {
                    _ = try await deliver(h, body)
                    try await h.drain()
                }
            }
            // Five deliveries of each event, shuffled, twenty at a time, with jobs running in between.
            var generator = SplitMix64(seed: 12)
            let stream = stormy.flatMap { $0.1 }.flatMap { Array(repeating: $0, count: 5) }.shuffled(using: &generator)
            #expect(stream.count == 500)
            for (index, chunk) in stride(from: 0, to: stream.count, by: 20).map({ Array(stream[$0..<min($0 + 20, stream.count)]) }).enumerated() {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for body in chunk { group.addTask { _ = try await deliver(h, body) } }
                    try await group.waitForAll()
                }
                if index % 3 == 0 { try await h.drain() }
            }
            try await h.drain()

            var expected: [Outcome] = []
            for (subscription, _) in clean { expected.append(try await outcome(h, subscription)) }
            var observed: [Outcome] = []
            for (subscription, _) in stormy { observed.append(try await outcome(h, subscription)) }
            #expect(Set(expected) == [Outcome(subscription: "active", invoice: "paid", payments: 2, postings: 1)])
            #expect(observed == expected)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM webhook_events") == 200)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM webhook_events WHERE applied_at IS NULL") == 0)
            #expect(try await h.balance(.accountsReceivable) == 0)
        }
    }
}

/// A small seeded generator, so a shuffled storm is the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct OrderPaymentIntegrationTests {
    func placed(_ order: UUID, total: Int64? = 90_000) -> OrderPlacedV1 {
        OrderPlacedV1(orderId: order, listingId: UUID.v7(), buyerId: UUID.v7(), quantity: 2, placedAt: Date(), vendorId: UUID.v7(),
                      unitPriceAmount: total.map { $0 / 2 }, totalAmount: total, commissionAmount: total.map { $0 * 8 / 100 },
                      currency: total == nil ? nil : "GBP", paymentDueAt: Date().addingTimeInterval(900))
    }

    func deliver(_ h: BillingHarness, _ order: OrderPlacedV1) async throws {
        let inbox = Inbox(client: h.client, handlers: h.service.eventHandlers, service: "billing", clock: h.clock)
        let event = try CloudEvent.json(type: OrderEvents.placed.type, source: "/marketplace/tests", subject: OrderEvents.placed.subject(for: order),
                                        payload: order, time: Date())
        _ = try await inbox.apply(event, topic: Topics.ordersOrders, logger: TestInfrastructure.logger)
    }

    @Test func anOrderPlacedGetsOneIntentForItsTotalAndOrdersIsTold() async throws {
        try await BillingHarness.run { h in
            let order = UUID.v7()
            try await deliver(h, placed(order))
            // A redelivery under a new event id, and an order from before prices were stated.
            try await deliver(h, placed(order))
            try await deliver(h, placed(UUID.v7(), total: nil))
            try await h.drain()
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM order_payments") == 1)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM sandbox_payment_intents") == 1)
            let intent = try #require(try await h.client.query("""
                SELECT id, amount, currency, status, metadata ->> 'order_id', transfer_group FROM sandbox_payment_intents
                """, logger: TestInfrastructure.logger).decode((String, Int64, String, String, String?, String?).self).first(where: { _ in true }))
            #expect(intent.1 == 90_000 && intent.2 == "GBP" && intent.3 == "requires_payment_method")
            #expect(intent.4 == order.lowercased && intent.5 == order.lowercased)
            let announced = try #require(try await h.client.query("""
                SELECT convert_from(data, 'UTF8') FROM outbox WHERE type = \(EventTypes.paymentIntentCreated)
                """, logger: TestInfrastructure.logger).decode(String.self).first(where: { _ in true }))
            let payload = try EventCoding.decoder.decode(PaymentIntentV1.self, from: Data(announced.utf8))
            #expect(payload.orderId == order && payload.intentId == intent.0 && payload.amount == 90_000 && payload.status == "requires_payment_method")
            #expect(payload.clientSecret?.hasPrefix(intent.0 + "_secret_") == true)
            #expect(try await TestInfrastructure.scalar(h.client, """
                SELECT count(*) FROM order_payments WHERE intent_id = \(intent.0) AND status = 'awaiting_payment' AND commission = 7200
                """) == 1)
            // Asked again with the same key (a job retried after its transaction rolled back): the same intent.
            let again = try await h.service.provider.createPaymentIntent(
                PaymentIntentRequest(amount: Money(amount: 90_000, currency: .gbp), description: "again", metadata: [:]),
                idempotencyKey: "order:\(order.lowercased):intent")
            #expect(again.id == intent.0)
        }
    }
}
