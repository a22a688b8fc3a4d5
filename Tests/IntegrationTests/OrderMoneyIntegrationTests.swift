@testable import Billing
import Contracts
import Foundation
import Logging
@testable import Platform
import PostgresNIO
import Testing

/// An order's money in billing, end to end inside the service: order events in through the inbox,
/// the buyer's confirmation at the sandbox, its signed webhooks fed back (twice, to show they
/// apply once), the jobs run on demand; then the ledger, the vendor's balance, refunds and payouts
/// read back.
@Suite(.serialized, .enabled(if: TestInfrastructure.databaseURL != nil))
struct OrderMoneyIntegrationTests {
    /// One order between a fresh buyer and vendor: 900.00 GBP, 72.00 commission.
    struct Order {
        var id = UUID.v7()
        var buyer = UUID.v7()
        var vendor = UUID.v7()
        var listing = UUID.v7()
        var total: Int64 = 90_000
        var commission: Int64 = 7_200

        var placed: OrderPlacedV1 {
            OrderPlacedV1(orderId: id, listingId: listing, buyerId: buyer, quantity: 1, placedAt: Date(), vendorId: vendor, unitPriceAmount: total,
                          totalAmount: total, commissionAmount: commission, currency: "GBP", paymentDueAt: Date().addingTimeInterval(900))
        }

        func canceled(reason: String = "payment_timeout", wasPaid: Bool = false) -> OrderCanceledV1 {
            OrderCanceledV1(orderId: id, listingId: listing, reason: reason, canceledAt: Date(), buyerId: buyer, vendorId: vendor, wasPaid: wasPaid)
        }

        var dispute = UUID.v7()

        var disputeOpened: DisputeOpenedV1 {
            DisputeOpenedV1(disputeId: dispute, orderId: id, listingId: listing, buyerId: buyer, vendorId: vendor, reason: "damaged", openedAt: Date())
        }

        var disputeWithdrawn: DisputeChangedV1 {
            DisputeChangedV1(disputeId: dispute, orderId: id, listingId: listing, buyerId: buyer, vendorId: vendor, at: Date())
        }

        func disputeResolved(_ outcome: String, refund: Int64) -> DisputeResolvedV1 {
            DisputeResolvedV1(disputeId: dispute, orderId: id, listingId: listing, buyerId: buyer, vendorId: vendor, outcome: outcome,
                              refundAmount: refund, totalAmount: total, currency: "GBP", resolvedAt: Date())
        }

        func received(refunded: Int64 = 0, commission: Int64? = nil) -> OrderReceivedV1 {
            let share = commission ?? self.commission
            return OrderReceivedV1(orderId: id, listingId: listing, buyerId: buyer, vendorId: vendor, totalAmount: total, refundedAmount: refunded,
                                   commissionAmount: share, vendorAmount: total - refunded - share, currency: "GBP", assumed: false, receivedAt: Date())
        }
    }

    func deliver<Payload>(_ h: BillingHarness, _ contract: EventContract<Payload>, _ payload: Payload) async throws {
        let inbox = Inbox(client: h.client, handlers: h.service.eventHandlers, service: "billing", clock: h.clock)
        let event = try CloudEvent.json(type: contract.type, source: "/marketplace/tests", subject: contract.subject(for: payload),
                                        payload: payload, time: Date())
        _ = try await inbox.apply(event, topic: contract.topic, logger: TestInfrastructure.logger)
        try await h.drain()
    }

    /// Feeds every sandbox event not fed yet to the webhook endpoint, each twice, and runs the jobs,
    /// until the sandbox has nothing more to say.
    func feedWebhooks(_ h: BillingHarness) async throws {
        while true {
            let bodies = try await strings(h, """
                UPDATE sandbox_events SET delivered_at = now() WHERE delivered_at IS NULL RETURNING body
                """)
            guard !bodies.isEmpty else { return }
            for body in bodies + bodies {
                let bytes = Array(body.utf8)
                let header = WebhookSignature(secret: BillingHarness.secret).header(for: bytes, at: Date())
                _ = try await h.service.controller.webhooks.receive(body: bytes, signature: header, context: h.context)
            }
            try await h.drain()
        }
    }

    func strings(_ h: BillingHarness, _ query: PostgresQuery) async throws -> [String] {
        var values: [String] = []
        for try await value in try await h.client.query(query, logger: TestInfrastructure.logger).decode(String.self) { values.append(value) }
        return values
    }

    func intent(_ h: BillingHarness, _ order: Order) async throws -> String {
        try #require(try await strings(h, "SELECT intent_id FROM order_payments WHERE order_id = \(order.id) AND intent_id IS NOT NULL").first)
    }

    func payment(_ h: BillingHarness, _ order: Order) async throws -> OrderPayment? {
        try await Database.transaction(h.client, h.context) { tx in try await h.service.orderPayments.lock(order.id, in: tx) }
    }

    func balance(_ h: BillingHarness, _ vendor: UUID) async throws -> Payouts.Balance {
        try await Database.transaction(h.client, h.context) { tx in try await h.service.payouts.balance(of: vendor, in: tx) }
    }

    func outbox<Payload: Decodable>(_ h: BillingHarness, _ contract: EventContract<Payload>) async throws -> [Payload] {
        try await strings(h, "SELECT convert_from(data, 'UTF8') FROM outbox WHERE type = \(contract.type) ORDER BY seq")
            .map { try EventCoding.decoder.decode(Payload.self, from: Data($0.utf8)) }
    }

    /// The books close: every currency's debits equal its credits and the balances sum to zero.
    func expectBalancedBooks(_ h: BillingHarness, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let trial = try await h.trialBalance()
        for currency in trial.currencies { #expect(currency.debits == currency.credits, sourceLocation: sourceLocation) }
        #expect(trial.accounts.reduce(0) { $0 + $1.balance } == 0, sourceLocation: sourceLocation)
    }

    func gbp(_ amount: Int64) -> Money { Money(amount: amount, currency: .gbp) }

    func pay(_ h: BillingHarness, _ order: Order, card: String = "pm_card_visa") async throws -> ProviderPaymentIntent {
        let sandbox = try #require(h.service.sandbox)
        let confirmed = try await sandbox.confirm(try await intent(h, order), paymentMethod: card)
        try await feedWebhooks(h)
        return confirmed
    }

    @Test func aPaidOrderIsHeldInEscrowReleasedOnReceiptAndPaidOutOnceByTheDailyRun() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            try await deliver(h, OrderEvents.placed, order.placed)
            let paid = try await pay(h, order)
            #expect(paid.status == .succeeded && paid.fee.amount == 1_375)
            #expect(try await payment(h, order)?.status == .held)
            #expect(try await outbox(h, PaymentEvents.succeeded).map(\.orderId) == [order.id], "announced once, whatever the redeliveries")
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(90_000)], available: [], inDispute: []))
            #expect(try await h.balance(.providerBalance) == 88_625)
            #expect(try await h.balance(.providerFees) == 1_375)

            try await deliver(h, OrderEvents.received, order.received())
            try await deliver(h, OrderEvents.received, order.received())
            #expect(try await payment(h, order)?.status == .released)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [gbp(82_800)], inDispute: []))
            #expect(try await h.balance(.commissionRevenue) == -7_200)

            // No payout account: the money stays available.
            try await Database.transaction(h.client, h.context) { tx in try await h.service.payouts.scheduleDaily(in: tx) }
            try await h.drain()
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM payouts") == 0)
            #expect(try await balance(h, order.vendor).available == [gbp(82_800)])

            let (account, created) = try await h.service.payouts.registerAccount(vendor: order.vendor, context: h.context)
            #expect(created && account.status == "active" && account.id.hasPrefix("acct_"))
            let (again, createdAgain) = try await h.service.payouts.registerAccount(vendor: order.vendor, context: h.context)
            #expect(!createdAgain && again == account)
            for _ in 0..<2 {
                try await Database.transaction(h.client, h.context) { tx in try await h.service.payouts.scheduleDaily(in: tx) }
                try await h.drain()
            }
            let payouts = try await Database.transaction(h.client, h.context) { tx in
                try await h.service.payouts.page(vendor: order.vendor, try KeysetPageRequest(limit: 20, cursor: nil, order: Payouts.newestFirst, binding: "t"), in: tx)
            }
            #expect(payouts.items.count == 1)
            let payout = try #require(payouts.items.first)
            #expect(payout.amount == gbp(82_800) && payout.status == "paid" && payout.orders == [order.id] && payout.orderCount == 1)
            #expect(try await TestInfrastructure.scalar(h.client, """
                SELECT count(*) FROM sandbox_transfers WHERE destination = \(account.id) AND amount = 82800
                """) == 1)
            #expect(try await balance(h, order.vendor).available == [gbp(0)])
            #expect(try await h.balance(.payoutsInTransit) == 0)
            #expect(try await h.balance(.orderEscrow) == 0)
            try await expectBalancedBooks(h)
        }
    }

    @Test func aDeclinedCardLeavesThePaymentWaitingAndASecondPaymentIsRefused() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            try await deliver(h, OrderEvents.placed, order.placed)
            let declined = try await pay(h, order, card: "pm_card_chargeDeclined")
            #expect(declined.status == .requiresPaymentMethod && declined.failureCode == "card_declined")
            #expect(try await payment(h, order)?.status == .awaitingPayment)
            #expect(try await outbox(h, PaymentEvents.succeeded).isEmpty)

            _ = try await pay(h, order, card: "pm_card_visa")
            #expect(try await payment(h, order)?.status == .held)
            let sandbox = try #require(h.service.sandbox)
            let id = try await intent(h, order)
            await #expect(throws: ProviderError.self) { try await sandbox.confirm(id, paymentMethod: "pm_card_visa") }
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM ledger_entries WHERE kind = 'order_captured'") == 1)
            try await expectBalancedBooks(h)
        }
    }

    @Test func aPaymentThatLandsAfterItsOrderWasCanceledIsRefundedAtOnce() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            try await deliver(h, OrderEvents.placed, order.placed)
            // The buyer pays just as the deadline cancels the order; the provider's word comes after.
            let sandbox = try #require(h.service.sandbox)
            _ = try await sandbox.confirm(try await intent(h, order), paymentMethod: "pm_card_visa")
            try await deliver(h, OrderEvents.canceled, order.canceled())
            #expect(try await payment(h, order)?.status == .canceled)
            try await feedWebhooks(h)

            let p = try #require(try await payment(h, order))
            #expect(p.status == .refunded && p.refunded == 90_000)
            #expect(try await outbox(h, PaymentEvents.succeeded).isEmpty, "orders is not told a canceled order was paid")
            let refunds = try await outbox(h, PaymentEvents.refunded)
            #expect(refunds.count == 1 && refunds.first?.amount == 90_000 && refunds.first?.refundedTotal == 90_000)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT amount_refunded FROM sandbox_payment_intents") == 90_000)
            #expect(try await h.balance(.orderEscrow) == 0)
            #expect(try await h.balance(.refundsPayable) == 0)
            try await expectBalancedBooks(h)
        }
    }

    @Test func anUnpaidOrderCanceledHasItsIntentCanceledAndAPaidOneIsRefundedInFull() async throws {
        try await BillingHarness.run { h in
            let unpaid = Order()
            try await deliver(h, OrderEvents.placed, unpaid.placed)
            try await deliver(h, OrderEvents.canceled, unpaid.canceled())
            try await feedWebhooks(h)
            #expect(try await TestInfrastructure.scalar(h.client, """
                SELECT count(*) FROM sandbox_payment_intents WHERE id = \(try await intent(h, unpaid)) AND status = 'canceled'
                """) == 1)
            let sandbox = try #require(h.service.sandbox)
            let id = try await intent(h, unpaid)
            await #expect(throws: ProviderError.self, "a dead order cannot be paid") { try await sandbox.confirm(id, paymentMethod: "pm_card_visa") }

            let paid = Order()
            try await deliver(h, OrderEvents.placed, paid.placed)
            _ = try await pay(h, paid)
            try await deliver(h, OrderEvents.canceled, paid.canceled(reason: "vendor_canceled", wasPaid: true))
            try await deliver(h, OrderEvents.canceled, paid.canceled(reason: "vendor_canceled", wasPaid: true))
            try await feedWebhooks(h)
            #expect(try await payment(h, paid)?.status == .refunded)
            #expect(try await outbox(h, PaymentEvents.refunded).map(\.orderId) == [paid.id])
            #expect(try await balance(h, paid.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: []))
            try await expectBalancedBooks(h)
        }
    }

    @Test func aWebhookForAnOrderBillingHasNotSeenIsKeptAndAppliedWhenTheOrderArrives() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            // The intent billing's job would make, made and paid before billing records the order.
            let early = try await h.service.provider.createPaymentIntent(
                PaymentIntentRequest(amount: gbp(order.total), description: "Order", metadata: ["order_id": order.id.lowercased],
                                     transferGroup: order.id.lowercased),
                idempotencyKey: "order:\(order.id.lowercased):intent")
            _ = try await h.service.sandbox!.confirm(early.id, paymentMethod: "pm_card_visa")
            try await feedWebhooks(h)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM early_intent_events") == 1)
            #expect(try await payment(h, order) == nil)

            try await deliver(h, OrderEvents.placed, order.placed)
            try await feedWebhooks(h)
            let p = try #require(try await payment(h, order))
            #expect(p.status == .held && p.intentId == early.id)
            #expect(try await outbox(h, PaymentEvents.succeeded).map(\.orderId) == [order.id])
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM early_intent_events") == 0)
            try await expectBalancedBooks(h)
        }
    }

    @Test func anAdminRefundsPartWhileHeldAndPartAfterReleaseWithTheCommissionShared() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            let admin = h.admin().userId
            try await deliver(h, OrderEvents.placed, order.placed)
            _ = try await pay(h, order)
            let first = try await Database.transaction(h.client, h.context) { tx in
                try await h.service.orderPayments.refund(order: order.id, amount: gbp(30_000), reason: "one puppy stayed", by: admin, in: tx)
            }
            #expect(first.status == "pending" && first.amount == gbp(30_000))
            try await feedWebhooks(h)
            #expect(try await payment(h, order)?.status == .held)
            #expect(try await balance(h, order.vendor).pending == [gbp(60_000)])

            // Orders states the split of what remains: 4,800 commission, 55,200 to the vendor.
            try await deliver(h, OrderEvents.received, order.received(refunded: 30_000, commission: 4_800))
            #expect(try await balance(h, order.vendor).available == [gbp(55_200)])

            _ = try await Database.transaction(h.client, h.context) { tx in
                try await h.service.orderPayments.refund(order: order.id, amount: gbp(10_000), reason: "goodwill", by: admin, in: tx)
            }
            try await feedWebhooks(h)
            // 10,000 at the order's 8 % rate: 800 of commission, 9,200 from the vendor.
            #expect(try await balance(h, order.vendor).available == [gbp(46_000)])
            #expect(try await h.balance(.commissionRevenue) == -4_000)
            #expect(try await outbox(h, PaymentEvents.refunded).map(\.refundedTotal) == [30_000, 40_000])

            // More than remains, or another currency, is refused and changes nothing.
            await #expect(throws: Problem.self) {
                try await Database.transaction(h.client, h.context) { tx in
                    try await h.service.orderPayments.refund(order: order.id, amount: gbp(50_001), reason: "too much", by: admin, in: tx)
                }
            }
            await #expect(throws: Problem.self) {
                try await Database.transaction(h.client, h.context) { tx in
                    try await h.service.orderPayments.refund(order: order.id, amount: Money(amount: 100, currency: .eur), reason: "euros", by: admin, in: tx)
                }
            }
            #expect(try await payment(h, order)?.refunded == 40_000)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT amount_refunded FROM sandbox_payment_intents") == 40_000)
            try await expectBalancedBooks(h)
        }
    }

    func payOut(_ h: BillingHarness) async throws {
        try await Database.transaction(h.client, h.context) { tx in try await h.service.payouts.scheduleDaily(in: tx) }
        try await h.drain()
    }

    func count(_ h: BillingHarness, _ kind: String) async throws -> Int64 {
        try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM ledger_entries WHERE kind = \(kind)")
    }

    @Test func aBuyersDisputeFreezesTheMoneyAndASplitRefundsAPartAndReleasesTheRest() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            try await deliver(h, OrderEvents.placed, order.placed)
            _ = try await pay(h, order)
            // Opened (delivered twice: frozen once), then withdrawn: held again.
            try await deliver(h, DisputeEvents.opened, order.disputeOpened)
            try await deliver(h, DisputeEvents.opened, order.disputeOpened)
            #expect(try await payment(h, order)?.status == .frozen)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: [gbp(90_000)]))
            #expect(try await count(h, "order_frozen") == 1)
            try await deliver(h, DisputeEvents.withdrawn, order.disputeWithdrawn)
            #expect(try await payment(h, order)?.status == .held)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(90_000)], available: [], inDispute: [gbp(0)]))

            // Disputed again and decided: 300.00 back to the buyer, 600.00 released (8 % of it, 48.00, is the commission).
            var again = order
            again.dispute = UUID.v7()
            try await deliver(h, DisputeEvents.opened, again.disputeOpened)
            try await deliver(h, DisputeEvents.resolved, again.disputeResolved("refund", refund: 30_000))
            try await deliver(h, DisputeEvents.resolved, again.disputeResolved("refund", refund: 30_000))
            try await feedWebhooks(h)
            #expect(try await payment(h, order)?.status == .settled)
            #expect(try await payment(h, order)?.refunded == 30_000)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [gbp(55_200)], inDispute: [gbp(0)]))
            #expect(try await outbox(h, PaymentEvents.refunded).map(\.refundedTotal) == [30_000])
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT amount_refunded FROM sandbox_payment_intents") == 30_000)
            try await expectBalancedBooks(h)
        }
    }

    @Test func aDisputeResolvedByReleasePaysTheVendorAndAFullRefundPaysTheBuyer() async throws {
        try await BillingHarness.run { h in
            let released = Order(), refunded = Order()
            for order in [released, refunded] {
                try await deliver(h, OrderEvents.placed, order.placed)
                _ = try await pay(h, order)
                try await deliver(h, DisputeEvents.opened, order.disputeOpened)
            }
            try await deliver(h, DisputeEvents.resolved, released.disputeResolved("release", refund: 0))
            // Orders states the receipt right after the release: already applied, it changes nothing.
            try await deliver(h, OrderEvents.received, released.received())
            try await deliver(h, DisputeEvents.resolved, refunded.disputeResolved("refund", refund: 90_000))
            try await feedWebhooks(h)
            #expect(try await payment(h, released)?.status == .released)
            #expect(try await balance(h, released.vendor).available == [gbp(82_800)])
            #expect(try await payment(h, refunded)?.status == .refunded)
            #expect(try await balance(h, refunded.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: [gbp(0)]))
            #expect(try await outbox(h, PaymentEvents.refunded).map(\.refundedTotal) == [90_000])
            try await expectBalancedBooks(h)
        }
    }

    @Test func aChargebackOnADisputedPaymentJoinsTheDisputeAndOnceWonTheMoneyIsFrozenForItAgain() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            let sandbox = try #require(h.service.sandbox)
            try await deliver(h, OrderEvents.placed, order.placed)
            _ = try await pay(h, order)
            try await deliver(h, DisputeEvents.opened, order.disputeOpened)
            let chargeback = try await sandbox.openDispute(on: try await intent(h, order))
            try await feedWebhooks(h)
            #expect(try await payment(h, order)?.status == .contested)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: [gbp(90_000)]))
            #expect(try await outbox(h, PaymentEvents.chargebackOpened).map(\.status) == ["open"], "orders is told, to join it to the dispute")
            try await sandbox.closeDispute(chargeback.id, won: true)
            try await feedWebhooks(h)
            #expect(try await payment(h, order)?.status == .frozen, "won: the buyer's dispute still holds the money")
            #expect(try await outbox(h, PaymentEvents.chargebackClosed).map(\.status) == ["won"])
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: [gbp(90_000)]))
            try await deliver(h, DisputeEvents.resolved, order.disputeResolved("release", refund: 0))
            #expect(try await balance(h, order.vendor).available == [gbp(82_800)])
            try await expectBalancedBooks(h)
        }
    }

    @Test func aChargebackFreezesHeldMoneyAndOnceWonTheReceiptThatWaitedReleasesIt() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            let sandbox = try #require(h.service.sandbox)
            try await deliver(h, OrderEvents.placed, order.placed)
            _ = try await pay(h, order, card: "pm_card_createDispute")
            #expect(try await payment(h, order)?.status == .contested)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: [gbp(90_000)]))
            #expect(try await h.balance(.chargebacksWithheld) == 90_000)

            // The buyer confirms receipt while the bank decides: nothing leaves the frozen money.
            try await deliver(h, OrderEvents.received, order.received())
            #expect(try await payment(h, order)?.status == .contested)
            #expect(try await balance(h, order.vendor).available == [])

            let dispute = try #require(try await strings(h, "SELECT id FROM sandbox_disputes").first)
            try await sandbox.closeDispute(dispute, won: true)
            try await feedWebhooks(h)
            #expect(try await payment(h, order)?.status == .released, "won: held again, and the receipt that waited applied")
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [gbp(82_800)], inDispute: [gbp(0)]))
            #expect(try await h.balance(.chargebacksWithheld) == 0)
            #expect(try await count(h, "order_chargeback_frozen") == 1)
            #expect(try await count(h, "order_chargeback_returned") == 1)
            try await expectBalancedBooks(h)
        }
    }

    @Test func aChargebackLostAfterPayoutIsTakenFromTheVendorAndTheNegativeBalanceCarriedToTheNextPayout() async throws {
        try await BillingHarness.run { h in
            let first = Order()
            let sandbox = try #require(h.service.sandbox)
            _ = try await h.service.payouts.registerAccount(vendor: first.vendor, context: h.context)
            try await deliver(h, OrderEvents.placed, first.placed)
            _ = try await pay(h, first)
            try await deliver(h, OrderEvents.received, first.received())
            try await payOut(h)
            #expect(try await balance(h, first.vendor).available == [gbp(0)], "paid out")

            let dispute = try await sandbox.openDispute(on: try await intent(h, first))
            try await feedWebhooks(h)
            #expect(try await payment(h, first)?.status == .contestedAfterRelease)
            #expect(try await balance(h, first.vendor) == Payouts.Balance(pending: [gbp(0)], available: [gbp(-82_800)], inDispute: [gbp(90_000)]))
            try await sandbox.closeDispute(dispute.id, won: false)
            try await feedWebhooks(h)
            #expect(try await payment(h, first)?.status == .chargedBack)
            #expect(try await balance(h, first.vendor) == Payouts.Balance(pending: [gbp(0)], available: [gbp(-82_800)], inDispute: [gbp(0)]))
            #expect(try await h.balance(.commissionRevenue) == 0, "the commission on a sale the bank undid is given up")
            try await payOut(h)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM payouts") == 1, "nothing paid while the balance is negative")

            // The vendor's next sale pays off what it owes first.
            var second = Order()
            second.vendor = first.vendor
            second.total = 180_000
            second.commission = 14_400
            try await deliver(h, OrderEvents.placed, second.placed)
            _ = try await pay(h, second)
            try await deliver(h, OrderEvents.received, second.received())
            try await payOut(h)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT amount FROM payouts ORDER BY created_at DESC, id DESC LIMIT 1") == 82_800)
            #expect(try await balance(h, first.vendor).available == [gbp(0)])
            try await expectBalancedBooks(h)
        }
    }

    @Test func aDisputeReadAfterItClosedOpensAndClosesOnceWhateverTheEventsOrder() async throws {
        try await BillingHarness.run { h in
            let order = Order()
            let sandbox = try #require(h.service.sandbox)
            try await deliver(h, OrderEvents.placed, order.placed)
            _ = try await pay(h, order)
            let dispute = try await sandbox.openDispute(on: try await intent(h, order))
            try await sandbox.closeDispute(dispute.id, won: false)
            // Both events delivered (each twice) after the bank decided: the first re-read finds it lost.
            try await feedWebhooks(h)
            #expect(try await payment(h, order)?.status == .chargedBack)
            #expect(try await count(h, "order_chargeback_frozen") == 1)
            #expect(try await count(h, "order_chargeback_lost") == 1)
            #expect(try await balance(h, order.vendor) == Payouts.Balance(pending: [gbp(0)], available: [], inDispute: [gbp(0)]))
            #expect(try await h.balance(.chargebacksWithheld) == 0)
            // The order's later facts change nothing: the money is gone to the buyer's bank.
            try await deliver(h, OrderEvents.received, order.received())
            #expect(try await payment(h, order)?.status == .chargedBack)
            try await expectBalancedBooks(h)
        }
    }
}
