import Contracts
import Foundation
import Hummingbird
import Logging
@testable import Orders
@testable import Platform
import PostgresNIO
import Testing

/// An orders service on a fresh schema: its inbox fed the other services' events by hand, its
/// timers run on demand on a business clock the test moves.
struct OrdersHarness: Sendable {
    let client: PostgresClient
    let service: OrdersService
    let inbox: Inbox
    let clock: BusinessClock
    let runner: JobRunner
    var workflow: OrderWorkflow { service.workflow }
    var context: OperationContext { .background(service: "orders", logger: TestInfrastructure.logger, clock: clock) }

    static func run(_ body: @Sendable (OrdersHarness) async throws -> Void) async throws {
        let logger = TestInfrastructure.logger
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try OrdersService.allMigrations(), logger: logger).migrate()
                let config = ConfigReader(values: ["DATABASE_URL": TestInfrastructure.databaseURL!])
                let settings = try ServiceSettings(serviceName: OrdersService.name, defaultPort: OrdersService.defaultPort, reader: config)
                let service = try OrdersService(dependencies: ServiceDependencies(settings: settings, config: config, postgres: client, logger: logger))
                let clock = BusinessClock()
                let runner = JobRunner(client: client, handlers: service.jobHandlers, service: schema, clock: clock, batchSize: 50, logger: logger)
                try await body(OrdersHarness(client: client, service: service, inbox: Inbox(client: client, handlers: service.eventHandlers,
                                                                                             service: schema, clock: clock),
                                             clock: clock, runner: runner))
            }
        }
    }

    /// Delivers an event to orders' inbox as the consumer would.
    @discardableResult
    func deliver<Payload>(_ contract: EventContract<Payload>, _ payload: Payload) async throws -> Inbox.Outcome {
        let event = try CloudEvent.json(type: contract.type, source: "/marketplace/tests", subject: contract.subject(for: payload),
                                        payload: payload, time: Date())
        return try await inbox.apply(event, topic: contract.topic, logger: TestInfrastructure.logger)
    }

    /// A vendor with a commission rate and a published listing orders can see.
    func listing(price: Int64 = 45_000, available: Int = 3, bps: Int = 800, vendor: UUID = UUID.v7()) async throws -> (listing: UUID, vendor: UUID) {
        let id = UUID.v7()
        try await deliver(BillingEvents.entitlementChanged, EntitlementChangedV1(
            vendorId: vendor, mayPublish: true, mayList: true, listingQuota: 10, commissionBps: bps, subscriptionStatus: "active",
            reason: "test", effectiveAt: Date(), version: Int64(bps)))
        try await deliver(ListingEvents.published, ListingV1(
            listingId: id, vendorId: vendor, category: "dogs", title: "Collie pups", status: "published", hiddenReason: nil, published: true,
            priceAmount: price, currency: "GBP", quantityAvailable: available, version: 1, changedAt: Date()))
        return (id, vendor)
    }

    static let address = ShippingAddress(name: "Ada Buyer", line1: "1 Farm Lane", line2: nil, city: "York", postalCode: "YO1 7HH", country: "GB")

    func place(_ listing: UUID, quantity: Int = 2, buyer: UUID = UUID.v7()) async throws -> OrderRecord {
        try await Database.transaction(client, context) { tx in
            try await workflow.place(buyer: buyer, listingId: listing, quantity: quantity, address: Self.address, in: tx)
        }
    }

    func order(_ id: UUID) async throws -> OrderRecord {
        try #require(try await Database.transaction(client, context) { tx in try await workflow.orders.load(id, in: tx) })
    }

    func history(_ id: UUID) async throws -> [String] {
        try await Database.transaction(client, context) { tx in try await workflow.orders.history(of: id, in: tx) }.map(\.event)
    }

    func act(_ event: OrderEvent, _ id: UUID, input: OrderInput = OrderInput()) async throws -> OrderRecord {
        try await Database.transaction(client, context) { tx in
            guard let current = try await workflow.orders.lock(id, in: tx) else { throw OrdersError.orderNotFound }
            return try await workflow.apply(event, to: current, input: input, in: tx)
        }
    }

    /// The events the order put in the outbox, oldest first.
    func events(_ order: UUID) async throws -> [String] {
        var types: [String] = []
        for try await type in try await client.query("SELECT type FROM outbox WHERE key = \(order.lowercased) ORDER BY seq",
                                                     logger: TestInfrastructure.logger).decode(String.self) {
            types.append(String(type.dropFirst("marketplace.orders.order.".count).dropLast(".v1".count)))
        }
        return types
    }

    func payload<Payload: Decodable>(_ contract: EventContract<Payload>, _ order: UUID) async throws -> Payload {
        let data = try #require(try await client.query("""
            SELECT convert_from(data, 'UTF8') FROM outbox WHERE type = \(contract.type) AND key = \(order.lowercased) ORDER BY seq DESC LIMIT 1
            """, logger: TestInfrastructure.logger).decode(String.self).first(where: { _ in true }))
        return try EventCoding.decoder.decode(Payload.self, from: Data(data.utf8))
    }

    func jobs(_ order: UUID) async throws -> [String] {
        var kinds: [String] = []
        for try await kind in try await client.query("SELECT kind FROM jobs WHERE key = \(order.lowercased) ORDER BY kind",
                                                     logger: TestInfrastructure.logger).decode(String.self) {
            kinds.append(kind)
        }
        return kinds
    }

    /// Moves business time on and runs what fell due.
    func advance(_ seconds: TimeInterval) async throws {
        clock.set(offsetMilliseconds: clock.offsetMilliseconds + Int64(seconds * 1000))
        while try await runner.runBatch() > 0 {}
    }

    func intent(_ order: OrderRecord, status: String = "requires_payment_method") -> PaymentIntentV1 {
        PaymentIntentV1(orderId: order.id, intentId: "pi_\(order.id.uuidString.prefix(8))", clientSecret: "secret_\(order.id.uuidString.prefix(8))",
                        status: status, amount: order.total.amount, currency: order.total.currency.code, occurredAt: Date())
    }

    func reserved(_ order: OrderRecord, unitPrice: Int64? = nil) -> StockReservedV1 {
        StockReservedV1(orderId: order.id, listingId: order.listingId, vendorId: order.vendorId, buyerId: order.buyerId, quantity: order.quantity,
                        title: order.listingTitle, unitPriceAmount: unitPrice ?? order.unitPrice.amount, currency: order.unitPrice.currency.code,
                        reservedAt: Date())
    }
}

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct OrderProcessIntegrationTests {
    @Test func anOrderIsPricedFromTheSnapshotAndPaidThroughTheSaga() async throws {
        try await OrdersHarness.run { h in
            let (listing, vendor) = try await h.listing(price: 45_000, bps: 800)
            let placed = try await h.place(listing, quantity: 2)
            #expect(placed.status == .pendingPayment && placed.vendorId == vendor && placed.payment == nil)
            #expect(placed.total == Money(amount: 90_000, currency: .gbp) && placed.commission == Money(amount: 7_200, currency: .gbp))
            #expect(abs(placed.paymentDueAt.timeIntervalSince(placed.createdAt) - 900) < 0.01)
            let announced = try await h.payload(OrderEvents.placed, placed.id)
            #expect(announced.totalAmount == 90_000 && announced.unitPriceAmount == 45_000 && announced.commissionAmount == 7_200
                    && announced.currency == "GBP" && announced.vendorId == vendor && announced.quantity == 2)
            #expect(try await h.jobs(placed.id) == ["orders.payment-deadline"])

            // Listings holds the units at the stated price; billing makes the intent, then the buyer pays.
            try await h.deliver(StockEvents.reserved, h.reserved(placed))
            #expect(try await h.order(placed.id).stockConfirmed)
            try await h.deliver(PaymentEvents.intentCreated, h.intent(placed))
            let pending = try await h.order(placed.id)
            #expect(pending.payment == PaymentView(intentId: h.intent(placed).intentId, clientSecret: h.intent(placed).clientSecret,
                                                   status: "requires_payment_method"))
            try await h.deliver(PaymentEvents.succeeded, h.intent(placed, status: "succeeded"))
            let paid = try await h.order(placed.id)
            #expect(paid.status == .paid && paid.payment?.status == "succeeded" && paid.payment?.clientSecret != nil)
            #expect(try await h.jobs(placed.id).isEmpty, "the payment deadline is gone")
            #expect(try await h.events(placed.id) == ["placed", "paid"])
            #expect(try await h.history(placed.id) == ["placed", "given its stock", "paid"])

            // A redelivered word about the payment changes nothing more.
            try await h.deliver(PaymentEvents.succeeded, h.intent(placed, status: "succeeded"))
            try await h.deliver(PaymentEvents.intentCreated, h.intent(placed))
            let again = try await h.order(placed.id)
            #expect(again.status == .paid && again.payment?.status == "succeeded")
            #expect(try await h.events(placed.id) == ["placed", "paid"])
        }
    }

    @Test func anOrderTheSnapshotRulesOutIsRefusedAtOnce() async throws {
        try await OrdersHarness.run { h in
            let (listing, vendor) = try await h.listing(available: 3)
            await #expect(throws: OrdersError.insufficientStock(available: 3)) { try await h.place(listing, quantity: 4) }
            await #expect(throws: OrdersError.ownListing) { try await h.place(listing, quantity: 1, buyer: vendor) }
            await #expect(throws: OrdersError.listingUnavailable) { try await h.place(UUID.v7(), quantity: 1) }
            try await h.deliver(ListingEvents.withdrawn, ListingV1(
                listingId: listing, vendorId: vendor, category: "dogs", title: "Collie pups", status: "closed", hiddenReason: nil, published: false,
                priceAmount: 45_000, currency: "GBP", quantityAvailable: 3, version: 2, changedAt: Date()))
            await #expect(throws: OrdersError.listingUnavailable) { try await h.place(listing, quantity: 1) }
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM orders") == 0)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM outbox") == 0)
        }
    }

    @Test func unpaidAfterFifteenMinutesItIsCanceledAndALatePaymentIsMarkedForRefund() async throws {
        try await OrdersHarness.run { h in
            let (listing, _) = try await h.listing()
            let placed = try await h.place(listing)
            try await h.advance(14 * 60)
            #expect(try await h.order(placed.id).status == .pendingPayment)
            try await h.advance(61)
            let expired = try await h.order(placed.id)
            #expect(expired.status == .canceled && expired.cancelReason == "payment_timeout")
            let canceled = try await h.payload(OrderEvents.canceled, placed.id)
            #expect(canceled.reason == "payment_timeout" && canceled.wasPaid == false && canceled.buyerId == placed.buyerId)
            // The buyer's payment lands after: the order stays canceled, and its timeline says a refund is due.
            try await h.deliver(PaymentEvents.succeeded, h.intent(placed, status: "succeeded"))
            let late = try await h.order(placed.id)
            #expect(late.status == .canceled && late.payment?.status == "succeeded")
            #expect(try await h.history(placed.id) == ["placed", "expired unpaid", "paid"])
            // Billing's refund arrives and is shown.
            try await h.deliver(PaymentEvents.refunded, PaymentRefundedV1(
                orderId: placed.id, intentId: h.intent(placed).intentId, refundId: "re_1", amount: placed.total.amount,
                refundedTotal: placed.total.amount, currency: "GBP", refundedAt: Date()))
            let refunded = try await h.order(placed.id)
            #expect(refunded.refunded == refunded.total && refunded.payment?.status == "refunded")
            #expect(try await h.events(placed.id) == ["placed", "canceled"])
        }
    }

    @Test func stockRefusedOrRepricedCancelsTheOrder() async throws {
        try await OrdersHarness.run { h in
            let (listing, _) = try await h.listing(available: 10)
            let refused = try await h.place(listing)
            try await h.deliver(StockEvents.rejected, StockRejectedV1(orderId: refused.id, listingId: listing, reason: "insufficient_stock", rejectedAt: Date()))
            #expect(try await h.order(refused.id).cancelReason == "stock_rejected")
            #expect(try await h.jobs(refused.id).isEmpty)

            let repriced = try await h.place(listing)
            try await h.deliver(StockEvents.reserved, h.reserved(repriced, unitPrice: 47_000))
            let changed = try await h.order(repriced.id)
            #expect(changed.status == .canceled && changed.cancelReason == "price_changed" && !changed.stockConfirmed)

            // Refused after the buyer paid: canceled, and billing is told it held a payment.
            let paidFirst = try await h.place(listing)
            try await h.deliver(PaymentEvents.succeeded, h.intent(paidFirst, status: "succeeded"))
            try await h.deliver(StockEvents.rejected, StockRejectedV1(orderId: paidFirst.id, listingId: listing, reason: "listing_unavailable", rejectedAt: Date()))
            #expect(try await h.order(paidFirst.id).status == .canceled)
            #expect(try await h.payload(OrderEvents.canceled, paidFirst.id).wasPaid == true)
            #expect(try await h.events(paidFirst.id) == ["placed", "paid", "canceled"])
        }
    }

    @Test func fulfilmentRunsOnTheClockToCompletion() async throws {
        try await OrdersHarness.run { h in
            let (listing, _) = try await h.listing(price: 45_000, bps: 800)
            // Assumed receipt.
            let first = try await h.place(listing)
            try await h.deliver(PaymentEvents.succeeded, h.intent(first, status: "succeeded"))
            _ = try await h.act(.ship, first.id, input: OrderInput(actorId: first.vendorId, carrier: "DHL", trackingNumber: "JD0146"))
            _ = try await h.act(.deliver, first.id, input: OrderInput(actorId: first.vendorId))
            #expect(try await h.jobs(first.id) == ["orders.assumed-receipt"])
            #expect(try await h.payload(OrderEvents.shipped, first.id).trackingNumber == "JD0146")
            try await h.advance(14 * 86_400 - 60)
            #expect(try await h.order(first.id).status == .delivered)
            try await h.advance(120)
            #expect(try await h.order(first.id).status == .received)
            let received = try await h.payload(OrderEvents.received, first.id)
            #expect(received.assumed && received.totalAmount == 90_000 && received.commissionAmount == 7_200 && received.vendorAmount == 82_800
                    && received.refundedAmount == 0)
            #expect(try await h.jobs(first.id) == ["orders.review-window"])
            try await h.advance(7 * 86_400 + 60)
            #expect(try await h.order(first.id).status == .completed)
            #expect(try await h.events(first.id) == ["placed", "paid", "shipped", "delivered", "received", "completed"])
            #expect(try await h.jobs(first.id).isEmpty)

            // Confirmed by the buyer: the assumed-receipt timer goes.
            let second = try await h.place(listing, quantity: 1)
            try await h.deliver(PaymentEvents.succeeded, h.intent(second, status: "succeeded"))
            _ = try await h.act(.ship, second.id, input: OrderInput(carrier: "UPS", trackingNumber: "1Z"))
            _ = try await h.act(.deliver, second.id)
            let confirmed = try await h.act(.receive, second.id, input: OrderInput(actorId: second.buyerId))
            #expect(confirmed.status == .received && confirmed.carrier == "UPS")
            #expect(try await h.payload(OrderEvents.received, second.id).assumed == false)
            #expect(try await h.jobs(second.id) == ["orders.review-window"])
            // Shipped orders are past canceling.
            await #expect(throws: Problem.self) { try await h.act(.cancelByBuyer, second.id) }
        }
    }

    /// What orders states to identity about a user: obligations opened and not closed since.
    func obligations(_ h: OrdersHarness, _ user: UUID) async throws -> [String] {
        var open: [String] = []
        for try await (type, data) in try await h.client.query("""
            SELECT type, convert_from(data, 'UTF8') FROM outbox WHERE topic = \(Topics.privacy("orders")) AND key = \(user.lowercased) ORDER BY seq
            """, logger: TestInfrastructure.logger).decode((String, String).self) {
            let obligation = try EventCoding.decoder.decode(UserObligationV1.self, from: Data(data.utf8))
            if type == EventTypes.userObligationOpened("orders") { open.append(obligation.kind) } else { open.removeAll { $0 == obligation.kind } }
        }
        return open.sorted()
    }

    @Test func aChargebackJoinsTheOrdersDisputeAndALostOneResolvesItAsARefund() async throws {
        try await OrdersHarness.run { h in
            let (listing, _) = try await h.listing(price: 45_000, bps: 800)
            let order = try await h.place(listing, quantity: 1)
            #expect(try await obligations(h, order.buyerId) == ["order"])
            #expect(try await obligations(h, order.vendorId) == ["order"])
            try await h.deliver(PaymentEvents.succeeded, h.intent(order, status: "succeeded"))
            _ = try await h.act(.ship, order.id, input: OrderInput(carrier: "DHL", trackingNumber: "JD1"))
            _ = try await h.act(.deliver, order.id)
            let buyer = Principal(userId: order.buyerId, roles: ["buyer"])
            let dispute = try await Database.transaction(h.client, h.context) { tx in
                try await h.service.disputes.open(order: order.id, reason: .notReceived, description: "Never came.", by: buyer, in: tx)
            }
            #expect(try await obligations(h, order.buyerId) == ["dispute", "order"])
            let chargeback = ChargebackV1(orderId: order.id, chargebackId: "dp_1", amount: 45_000, currency: "GBP", reason: "product_not_received",
                                          status: "open", occurredAt: Date())
            try await h.deliver(PaymentEvents.chargebackOpened, chargeback)
            try await h.deliver(PaymentEvents.chargebackOpened, chargeback)
            let joined = try await Database.transaction(h.client, h.context) { tx in try await h.service.disputes.read(dispute.id, by: buyer, in: tx) }
            #expect(joined.chargeback == .init(id: "dp_1", amount: Money(amount: 45_000, currency: .gbp), reason: "product_not_received", status: "open"))
            #expect(try await h.history(order.id).filter { $0 == "charged back" }.count == 1, "joined once, however often it is told")
            // While the bank decides, neither the buyer nor the desk may close the dispute.
            let moderator = Principal(userId: UUID.v7(), roles: ["moderator"], authenticationMethods: ["pwd", "otp"])
            await #expect(throws: DisputesError.chargebackOpen) {
                try await Database.transaction(h.client, h.context) { tx in try await h.service.disputes.withdraw(dispute.id, by: buyer, in: tx) }
            }
            await #expect(throws: DisputesError.chargebackOpen) {
                try await Database.transaction(h.client, h.context) { tx in
                    try await h.service.disputes.resolve(dispute.id, outcome: .release, refund: nil, note: "x", by: moderator, in: tx)
                }
            }
            // Lost: the bank gave the buyer the money; the dispute is resolved as that refund, the order refunded.
            var lost = chargeback
            lost.status = "lost"
            try await h.deliver(PaymentEvents.chargebackClosed, lost)
            let closed = try await Database.transaction(h.client, h.context) { tx in try await h.service.disputes.read(dispute.id, by: buyer, in: tx) }
            #expect(closed.status == "resolved" && closed.chargeback?.status == "lost")
            #expect(closed.resolution?.outcome == "refund" && closed.resolution?.refundAmount.amount == 45_000 && closed.resolution?.resolvedBy == nil)
            let refunded = try await h.order(order.id)
            #expect(refunded.status == .refunded && refunded.refunded.amount == 45_000)
            #expect(try await h.payload(DisputeEvents.resolved, order.id).refundAmount == 45_000)
            #expect(try await obligations(h, order.buyerId) == [], "nothing keeps the buyer from erasure now")
            #expect(try await obligations(h, order.vendorId) == [])
            #expect(try await h.jobs(order.id).isEmpty)
        }
    }

    @Test func fiftyConcurrentIdenticalRequestsPlaceOneOrder() async throws {
        try await OrdersHarness.run { h in
            let (listing, _) = try await h.listing(available: 100)
            let buyer = UUID.v7()
            let fingerprint = Array("same body".utf8)
            func attempt() async -> (HTTPResponse.Status, String?) {
                do {
                    let response = try await Idempotency.run(caller: buyer, key: "k-1", fingerprint: fingerprint, client: h.client, context: h.context) { tx in
                        let order = try await h.workflow.place(buyer: buyer, listingId: listing, quantity: 1, address: OrdersHarness.address, in: tx)
                        return try StoredResponse.json(OrderView(order, history: []), status: .created, headers: [:])
                    }
                    return (response.status, response.headers[.location] ?? String(describing: response.status))
                } catch let problem as Problem {
                    return (problem.status, nil)
                } catch {
                    return (.internalServerError, "\(error)")
                }
            }
            let outcomes = await withTaskGroup(of: (HTTPResponse.Status, String?).self) { group in
                for _ in 0..<50 { group.addTask { await attempt() } }
                var all: [(HTTPResponse.Status, String?)] = []
                for await outcome in group { all.append(outcome) }
                return all
            }
            #expect(outcomes.allSatisfy { $0.0 == .created || $0.0 == .conflict }, "\(outcomes.filter { $0.0 != .created && $0.0 != .conflict })")
            #expect(outcomes.contains { $0.0 == .created })
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM orders") == 1)
            #expect(try await TestInfrastructure.scalar(h.client, "SELECT count(*) FROM outbox WHERE type = \(EventTypes.orderPlaced)") == 1)
            // Asked again once it is done: the same answer.
            let replay = await attempt()
            #expect(replay.0 == .created)
        }
    }
}
