import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Platform
import PostgresNIO

struct SandboxDelivery: Codable, Sendable {
    var eventId: String
}

/// The payment provider of dev and tests: behaves like Stripe where billing can tell (customers,
/// saved methods by Stripe's test names, payment intents, refunds, transfers, idempotency keys,
/// signed webhooks delivered over HTTP at least once) and keeps its state in its own `sandbox_*`
/// tables, which nothing else reads. With chaos on it also delivers some events twice and some
/// late, so that they arrive out of order.
public struct SandboxProvider: PaymentProvider {
    public let name = "sandbox"

    /// Delivers one event to billing's webhook endpoint; retried with backoff until it answers 2xx.
    static let deliver = JobKind<SandboxDelivery>("sandbox.deliver-webhook", maxAttempts: 16, backoff: .seconds(1), maximumBackoff: .seconds(600))

    /// What a test card does (Stripe's test payment methods).
    enum Card: Sendable {
        case succeeds(brand: String, last4: String)
        /// Refused when saved, with this code.
        case declinedAtOnce(code: String, last4: String)
        /// Saved, but every charge fails.
        case chargesFail(last4: String)
        /// Succeeds, then the buyer's bank disputes the payment (a chargeback).
        case succeedsThenDisputed(last4: String)

        static func named(_ name: String) -> Card? {
            switch name {
            case "pm_card_visa": .succeeds(brand: "visa", last4: "4242")
            case "pm_card_mastercard": .succeeds(brand: "mastercard", last4: "4444")
            case "pm_card_amex": .succeeds(brand: "amex", last4: "8431")
            case "pm_card_chargeDeclined": .declinedAtOnce(code: "card_declined", last4: "0002")
            case "pm_card_insufficientFunds", "pm_card_visa_chargeDeclinedInsufficientFunds": .declinedAtOnce(code: "insufficient_funds", last4: "9995")
            case "pm_card_chargeCustomerFail": .chargesFail(last4: "0341")
            case "pm_card_createDispute": .succeedsThenDisputed(last4: "0259")
            default: nil
            }
        }
    }

    let client: PostgresClient
    let signature: WebhookSignature
    let webhookURL: String
    let chaos: Bool
    let httpClient: HTTPClient
    let logger: Logger
    let clock: BusinessClock

    public init(client: PostgresClient, webhookSecret: String, webhookURL: String, chaos: Bool, httpClient: HTTPClient, logger: Logger, clock: BusinessClock) {
        self.client = client
        self.signature = WebhookSignature(secret: webhookSecret)
        self.webhookURL = webhookURL
        self.chaos = chaos
        self.httpClient = httpClient
        self.logger = logger
        self.clock = clock
    }

    /// Stripe's fee for European cards: 1.5 % + 25 minor units, rounded half up.
    static func fee(on amount: Int64) -> Int64 {
        min(amount, (amount * 15 + 500) / 1_000 + 25)
    }

    static func newId(_ prefix: String) -> String {
        prefix + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
    }

    var context: OperationContext { OperationContext.background(service: "billing", logger: logger, clock: clock) }

    // MARK: The port

    public func createCustomer(_ request: NewCustomer, idempotencyKey: String) async throws -> ProviderCustomer {
        try await Database.transaction(client, context) { tx in
            try await tx.query("""
                INSERT INTO sandbox_customers (id, idempotency_key, vendor_id, description)
                VALUES (\(Self.newId("cus_")), \(idempotencyKey), \(request.vendorId), \(request.description))
                ON CONFLICT (idempotency_key) DO NOTHING
                """)
            guard let id = try await tx.first("SELECT id FROM sandbox_customers WHERE idempotency_key = \(idempotencyKey)", as: String.self) else {
                throw ProviderError.unavailable("the customer vanished")
            }
            return ProviderCustomer(id: id)
        }
    }

    public func attachPaymentMethod(_ paymentMethod: String, to customer: String, idempotencyKey: String) async throws -> ProviderPaymentMethod {
        guard let card = Card.named(paymentMethod) else { throw ProviderError.invalidRequest("No such PaymentMethod: '\(paymentMethod)'") }
        let (brand, last4): (String, String)
        switch card {
        case .succeeds(let b, let l): (brand, last4) = (b, l)
        case .chargesFail(let l), .succeedsThenDisputed(let l): (brand, last4) = ("visa", l)
        case .declinedAtOnce(let code, _): throw ProviderError.cardDeclined(code: code, message: "Your card was declined.")
        }
        return try await Database.transaction(client, context) { tx in
            guard try await tx.first("SELECT true FROM sandbox_customers WHERE id = \(customer)", as: Bool.self) == true else {
                throw ProviderError.invalidRequest("No such customer: '\(customer)'")
            }
            try await tx.query("""
                INSERT INTO sandbox_payment_methods (id, idempotency_key, customer_id, test_name, brand, last4)
                VALUES (\(Self.newId("pm_")), \(idempotencyKey), \(customer), \(paymentMethod), \(brand), \(last4))
                ON CONFLICT (idempotency_key) DO NOTHING
                """)
            let rows = try await tx.query("SELECT id, brand, last4 FROM sandbox_payment_methods WHERE idempotency_key = \(idempotencyKey)")
            for try await (id, brand, last4) in rows.decode((String, String, String).self) {
                return ProviderPaymentMethod(id: id, brand: brand, last4: last4)
            }
            throw ProviderError.unavailable("the payment method vanished")
        }
    }

    public func charge(_ request: ChargeRequest, idempotencyKey: String) async throws -> ProviderPaymentIntent {
        try await charge([(request, idempotencyKey)])[0].get()
    }

    /// Charges as a set, in one transaction with a statement per table: the methods read, the
    /// intents created (a key seen before answers with its first intent), their events stored and
    /// their deliveries scheduled.
    public func charge(_ requests: [(request: ChargeRequest, idempotencyKey: String)]) async throws -> [Result<ProviderPaymentIntent, ProviderError>] {
        guard !requests.isEmpty else { return [] }
        return try await Database.transaction(client, context) { tx in try await charge(requests, in: tx) }
    }

    private func charge(_ requests: [(request: ChargeRequest, idempotencyKey: String)], in tx: Transaction) async throws
        -> [Result<ProviderPaymentIntent, ProviderError>] {
        var cards: [String: String] = [:]
        for try await (id, customer, name) in try await tx.query("""
            SELECT id, customer_id, test_name FROM sandbox_payment_methods WHERE id = ANY(\(requests.map(\.request.paymentMethod)))
            """).decode((String, String, String).self) {
            cards[id + "|" + customer] = name
        }
        var answers = [Result<ProviderPaymentIntent, ProviderError>?](repeating: nil, count: requests.count)
        var fresh: [(index: Int, intent: ProviderPaymentIntent, key: String, request: ChargeRequest)] = []
        var askAgain: [Int] = []
        for (index, (request, key)) in requests.enumerated() {
            guard request.amount.amount > 0 else { answers[index] = .failure(.invalidRequest("amount must be a positive integer")); continue }
            guard let name = cards[request.paymentMethod + "|" + request.customer], let card = Card.named(name) else {
                askAgain.append(index)  // a retry of a key whose method has gone since still gets its intent
                continue
            }
            var succeeded = false
            if case .succeeds = card { succeeded = true }
            if case .succeedsThenDisputed = card { succeeded = true }
            let id = Self.newId("pi_")
            fresh.append((index, ProviderPaymentIntent(
                id: id, status: succeeded ? .succeeded : .requiresPaymentMethod, amount: request.amount,
                fee: Money(amount: succeeded ? Self.fee(on: request.amount.amount) : 0, currency: request.amount.currency),
                failureCode: succeeded ? nil : "card_declined", failureMessage: succeeded ? nil : "Your card was declined.",
                metadata: request.metadata, clientSecret: id + "_secret_" + Self.newId(""), created: Self.wholeMicroseconds(Date())), key, request))
        }
        var created: Set<String> = []
        if !fresh.isEmpty {
            let i = fresh.map(\.intent)
            let r = fresh.map(\.request)
            let metadata = try i.map { try JSONWriter.string($0.metadata) }
            for try await id in try await tx.query("""
                INSERT INTO sandbox_payment_intents (id, idempotency_key, customer_id, payment_method_id, amount, currency, fee, status,
                    failure_code, failure_message, description, metadata, transfer_group, client_secret, created_at, updated_at)
                SELECT n.id, n.key, n.customer, n.method, n.amount, n.currency, n.fee, n.status, n.failure_code, n.failure_message,
                       n.description, n.metadata::jsonb, n.transfer_group, n.client_secret, n.created, n.created
                FROM unnest(\(i.map(\.id))::text[], \(fresh.map(\.key))::text[], \(r.map(\.customer))::text[], \(r.map(\.paymentMethod))::text[],
                            \(i.map(\.amount.amount))::bigint[], \(i.map(\.amount.currency.code))::text[], \(i.map(\.fee.amount))::bigint[],
                            \(i.map(\.status.rawValue))::text[], \(NullableArray(i.map(\.failureCode)))::text[],
                            \(NullableArray(i.map(\.failureMessage)))::text[], \(r.map(\.description))::text[],
                            \(metadata)::text[], \(NullableArray(r.map(\.transferGroup)))::text[],
                            \(i.map { $0.clientSecret ?? "" })::text[], \(i.map(\.created))::timestamptz[])
                     AS n (id, key, customer, method, amount, currency, fee, status, failure_code, failure_message, description, metadata,
                           transfer_group, client_secret, created)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING id
                """).decode(String.self) {
                created.insert(id)
            }
        }
        for entry in fresh {
            if created.contains(entry.intent.id) { answers[entry.index] = .success(entry.intent) } else { askAgain.append(entry.index) }
        }
        if !askAgain.isEmpty {
            // Keys seen before: their first intent, whatever the method has become.
            var known: [String: ProviderPaymentIntent] = [:]
            let keys = askAgain.map { requests[$0].idempotencyKey }
            for (key, intent) in try await Self.keyedIntents(tx.query("""
                SELECT idempotency_key, \(unescaped: Self.intentFields) FROM sandbox_payment_intents WHERE idempotency_key = ANY(\(keys))
                """)) {
                known[key] = intent
            }
            for index in askAgain {
                let request = requests[index].request
                answers[index] = known[requests[index].idempotencyKey].map { .success($0) }
                    ?? .failure(.invalidRequest("No such PaymentMethod: '\(request.paymentMethod)' for this customer"))
            }
        }
        let emitted = fresh.filter { created.contains($0.intent.id) }.map(\.intent)
        try await emit(emitted.map { (type: $0.status == .succeeded ? "payment_intent.succeeded" : "payment_intent.payment_failed", object: IntentObject($0)) },
                       in: tx)
        return answers.map { $0 ?? .failure(.unavailable("no answer")) }
    }

    /// The date as Postgres keeps it (whole microseconds since 2000) and reads it back: an intent
    /// answered from memory is equal to the one read later.
    static func wholeMicroseconds(_ date: Date) -> Date {
        let epoch = Date(timeIntervalSince1970: 946_684_800)
        let microseconds = Int64(date.timeIntervalSince(epoch) * 1_000_000)
        return Date(timeInterval: Double(microseconds) / 1_000_000, since: epoch)
    }

    /// An intent waiting for the buyer's confirmation (`POST /v1/payments/{intentId}/confirm`).
    public func createPaymentIntent(_ request: PaymentIntentRequest, idempotencyKey: String) async throws -> ProviderPaymentIntent {
        guard request.amount.amount > 0 else { throw ProviderError.invalidRequest("amount must be a positive integer") }
        let id = Self.newId("pi_")
        return try await Database.autocommit(client, context) { tx in
            // A key seen before answers with its first intent (no row comes back from the insert).
            if let created = try await Self.intents(tx.query("""
                INSERT INTO sandbox_payment_intents (id, idempotency_key, customer_id, amount, currency, status, description, metadata,
                    transfer_group, client_secret, created_at, updated_at)
                VALUES (\(id), \(idempotencyKey), '', \(request.amount.amount), \(request.amount.currency.code), 'requires_payment_method',
                    \(request.description), \(try JSONWriter.string(request.metadata))::jsonb, \(request.transferGroup),
                    \(id + "_secret_" + Self.newId("")), now(), now())
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING \(unescaped: Self.intentFields)
                """)).first {
                return created
            }
            guard let existing = try await Self.intents(tx.query("\(unescaped: Self.intentColumns) WHERE idempotency_key = \(idempotencyKey)")).first else {
                throw ProviderError.unavailable("the intent vanished")
            }
            return existing
        }
    }

    /// What Stripe.js does on the buyer's client: confirms a waiting intent with a test card. A
    /// card that succeeds makes it `succeeded` (the fee known); a declining one leaves it
    /// `requires_payment_method` with the code, for another try. Either way a signed webhook
    /// follows. A succeeded or canceled intent cannot be confirmed (`invalidRequest`).
    public func confirm(_ id: String, paymentMethod: String) async throws -> ProviderPaymentIntent {
        guard let card = Card.named(paymentMethod) else { throw ProviderError.invalidRequest("No such PaymentMethod: '\(paymentMethod)'") }
        return try await Database.transaction(client, context) { tx in
            guard let current = try await Self.intents(tx.query("\(unescaped: Self.intentColumns) WHERE id = \(id) FOR UPDATE")).first else {
                throw ProviderError.notFound("No such payment_intent: '\(id)'")
            }
            guard current.status == .requiresPaymentMethod || current.status == .requiresConfirmation else {
                throw ProviderError.invalidRequest("This PaymentIntent's status is \(current.status.rawValue); it cannot be confirmed")
            }
            var intent = current
            switch card {
            case .succeeds, .succeedsThenDisputed:
                intent.status = .succeeded
                intent.fee = Money(amount: Self.fee(on: intent.amount.amount), currency: intent.amount.currency)
                intent.failureCode = nil
                intent.failureMessage = nil
            case .declinedAtOnce(let code, _):
                intent.failureCode = code
                intent.failureMessage = "Your card was declined."
            case .chargesFail:
                intent.failureCode = "card_declined"
                intent.failureMessage = "Your card was declined."
            }
            try await tx.query("""
                UPDATE sandbox_payment_intents SET status = \(intent.status.rawValue), fee = \(intent.fee.amount), failure_code = \(intent.failureCode),
                    failure_message = \(intent.failureMessage), payment_method_id = \(paymentMethod), updated_at = now()
                WHERE id = \(id)
                """)
            try await emit(intent.status == .succeeded ? "payment_intent.succeeded" : "payment_intent.payment_failed", object: IntentObject(intent), in: tx)
            if case .succeedsThenDisputed = card { try await openDispute(on: intent, in: tx) }
            return intent
        }
    }

    /// The buyer's bank disputes a succeeded payment (what `pm_card_createDispute` does at once):
    /// the whole amount, `charge.dispute.created` sent. Tests use it to open one later.
    public func openDispute(on intentId: String) async throws -> ProviderDispute {
        try await Database.transaction(client, context) { tx in
            guard let intent = try await Self.intents(tx.query("\(unescaped: Self.intentColumns) WHERE id = \(intentId) FOR UPDATE")).first else {
                throw ProviderError.notFound("No such payment_intent: '\(intentId)'")
            }
            guard intent.status == .succeeded else { throw ProviderError.invalidRequest("Only a succeeded payment can be disputed") }
            return try await openDispute(on: intent, in: tx)
        }
    }

    @discardableResult
    private func openDispute(on intent: ProviderPaymentIntent, in tx: Transaction) async throws -> ProviderDispute {
        let dispute = ProviderDispute(id: Self.newId("dp_"), paymentIntent: intent.id, amount: intent.amount, status: "needs_response", reason: "fraudulent")
        try await tx.query("""
            INSERT INTO sandbox_disputes (id, payment_intent_id, amount, currency, status, reason)
            VALUES (\(dispute.id), \(intent.id), \(dispute.amount.amount), \(dispute.amount.currency.code), \(dispute.status), \(dispute.reason ?? ""))
            """)
        try await emit("charge.dispute.created", object: DisputeObject(dispute), in: tx)
        return dispute
    }

    /// Decides a dispute as the buyer's bank would (tests and demos: Stripe's test mode decides by
    /// the evidence submitted), and sends `charge.dispute.closed`.
    public func closeDispute(_ id: String, won: Bool) async throws {
        try await Database.transaction(client, context) { tx in
            guard var dispute = try await disputes(tx.query("\(unescaped: Self.disputeColumns) WHERE id = \(id) FOR UPDATE")).first else {
                throw ProviderError.notFound("No such dispute: '\(id)'")
            }
            guard dispute.outcome == .open else { throw ProviderError.invalidRequest("This dispute is already closed") }
            dispute.status = won ? "won" : "lost"
            try await tx.query("UPDATE sandbox_disputes SET status = \(dispute.status), updated_at = now() WHERE id = \(id)")
            try await emit("charge.dispute.closed", object: DisputeObject(dispute), in: tx)
        }
    }

    public func dispute(_ id: String) async throws -> ProviderDispute {
        guard let dispute = try await disputes(client.query("\(unescaped: Self.disputeColumns) WHERE id = \(id)", logger: logger)).first else {
            throw ProviderError.notFound("No such dispute: '\(id)'")
        }
        return dispute
    }

    static let disputeColumns = "SELECT id, payment_intent_id, amount, currency::text, status, reason FROM sandbox_disputes"

    private func disputes(_ rows: PostgresRowSequence) async throws -> [ProviderDispute] {
        var result: [ProviderDispute] = []
        for try await (id, intent, amount, currency, status, reason) in rows.decode((String, String, Int64, String, String, String).self) {
            result.append(ProviderDispute(id: id, paymentIntent: intent, amount: try Money(amount: amount, currencyCode: currency), status: status,
                                          reason: reason))
        }
        return result
    }

    public func cancelPaymentIntent(_ id: String, idempotencyKey: String) async throws -> ProviderPaymentIntent {
        try await Database.transaction(client, context) { tx in
            guard var intent = try await Self.intents(tx.query("\(unescaped: Self.intentColumns) WHERE id = \(id) FOR UPDATE")).first else {
                throw ProviderError.notFound("No such payment_intent: '\(id)'")
            }
            if intent.status == .canceled { return intent }
            guard intent.status != .succeeded else {
                throw ProviderError.invalidRequest("You cannot cancel this PaymentIntent because it has a status of succeeded")
            }
            intent.status = .canceled
            try await tx.query("UPDATE sandbox_payment_intents SET status = 'canceled', updated_at = now() WHERE id = \(id)")
            try await emit("payment_intent.canceled", object: IntentObject(intent), in: tx)
            return intent
        }
    }

    /// A connected account that can receive transfers at once (no onboarding in the sandbox).
    public func createPayoutAccount(_ request: NewPayoutAccount, idempotencyKey: String) async throws -> ProviderPayoutAccount {
        try await Database.autocommit(client, context) { tx in
            try await tx.query("""
                INSERT INTO sandbox_accounts (id, idempotency_key, vendor_id) VALUES (\(Self.newId("acct_")), \(idempotencyKey), \(request.vendorId))
                ON CONFLICT (idempotency_key) DO NOTHING
                """)
            guard let id = try await tx.first("SELECT id FROM sandbox_accounts WHERE idempotency_key = \(idempotencyKey)", as: String.self) else {
                throw ProviderError.unavailable("the account vanished")
            }
            return ProviderPayoutAccount(id: id, status: .active, onboardingURL: nil)
        }
    }

    public func payoutAccount(_ id: String, onboarding: NewPayoutAccount) async throws -> ProviderPayoutAccount {
        guard try await client.query("SELECT true FROM sandbox_accounts WHERE id = \(id)", logger: logger).collect().first != nil else {
            throw ProviderError.notFound("No such account: '\(id)'")
        }
        return ProviderPayoutAccount(id: id, status: .active, onboardingURL: nil)
    }

    public func paymentIntent(_ id: String) async throws -> ProviderPaymentIntent {
        // A read: one statement, no transaction around it.
        let rows = try await client.query("\(unescaped: Self.intentColumns) WHERE id = \(id)", logger: logger)
        guard let intent = try await Self.intents(rows).first else { throw ProviderError.notFound("No such payment_intent: '\(id)'") }
        return intent
    }

    public func refund(_ request: RefundRequest, idempotencyKey: String) async throws -> ProviderRefund {
        try await Database.transaction(client, context) { tx in
            if let existing = try await refund(idempotencyKey: idempotencyKey, in: tx) { return existing }
            guard let intent = try await tx.query("SELECT id FROM sandbox_payment_intents WHERE id = \(request.paymentIntent) FOR UPDATE").collect().first,
                  let current = try await self.intent(where: "id", is: try intent.decode(String.self), in: tx) else {
                throw ProviderError.notFound("No such payment_intent: '\(request.paymentIntent)'")
            }
            guard current.status == .succeeded else { throw ProviderError.invalidRequest("This PaymentIntent has not succeeded") }
            let refunded = try await tx.first("SELECT amount_refunded FROM sandbox_payment_intents WHERE id = \(current.id)", as: Int64.self) ?? 0
            let amount = request.amount?.amount ?? (current.amount.amount - refunded)
            guard amount > 0, amount <= current.amount.amount - refunded else {
                throw ProviderError.invalidRequest("Refund amount is greater than the unrefunded amount")
            }
            let id = Self.newId("re_")
            try await tx.query("""
                INSERT INTO sandbox_refunds (id, idempotency_key, payment_intent_id, amount, currency, status, reason)
                VALUES (\(id), \(idempotencyKey), \(current.id), \(amount), \(current.amount.currency.code), 'succeeded', \(request.reason))
                """)
            try await tx.query("UPDATE sandbox_payment_intents SET amount_refunded = amount_refunded + \(amount), updated_at = now() WHERE id = \(current.id)")
            let refund = ProviderRefund(id: id, paymentIntent: current.id, amount: Money(amount: amount, currency: current.amount.currency), status: .succeeded)
            try await emit("refund.created", object: RefundObject(refund), in: tx)
            return refund
        }
    }

    public func transfer(_ request: TransferRequest, idempotencyKey: String) async throws -> ProviderTransfer {
        guard request.amount.amount > 0 else { throw ProviderError.invalidRequest("amount must be a positive integer") }
        return try await Database.transaction(client, context) { tx in
            guard try await tx.first("SELECT true FROM sandbox_accounts WHERE id = \(request.destination)", as: Bool.self) == true else {
                throw ProviderError.invalidRequest("No such destination: '\(request.destination)'")
            }
            try await tx.query("""
                INSERT INTO sandbox_transfers (id, idempotency_key, amount, currency, destination, transfer_group)
                VALUES (\(Self.newId("tr_")), \(idempotencyKey), \(request.amount.amount), \(request.amount.currency.code), \(request.destination),
                        \(request.transferGroup))
                ON CONFLICT (idempotency_key) DO NOTHING
                """)
            let rows = try await tx.query("SELECT id, amount, currency, destination FROM sandbox_transfers WHERE idempotency_key = \(idempotencyKey)")
            for try await (id, amount, currency, destination) in rows.decode((String, Int64, String, String).self) {
                return ProviderTransfer(id: id, amount: try Money(amount: amount, currencyCode: currency), destination: destination)
            }
            throw ProviderError.unavailable("the transfer vanished")
        }
    }

    public func verifyWebhook(body: [UInt8], signatureHeader: String?, now: Date) throws -> ProviderEvent {
        try signature.verify(body: body, header: signatureHeader, now: now)
        return try WebhookEnvelope.parse(body)
    }

    // MARK: Webhooks out

    /// Stores the event and schedules its delivery in the sandbox's transaction; chaos adds a
    /// second delivery or a delay.
    func emit(_ type: String, object: some Encodable & Sendable, in tx: Transaction) async throws {
        try await emit([(type, object)], in: tx)
    }

    /// Stores events of one object type and schedules their deliveries, a statement each.
    func emit<Object: Encodable & Sendable>(_ events: [(type: String, object: Object)], in tx: Transaction) async throws {
        guard !events.isEmpty else { return }
        let created = Int64(Date().timeIntervalSince1970)
        let ids = events.map { _ in Self.newId("evt_") }
        let bodies = try zip(ids, events).map { id, event in
            try JSONWriter.string(EventBody(id: id, type: event.type, created: created, data: .init(object: event.object)))
        }
        try await tx.query("""
            INSERT INTO sandbox_events (id, type, body) SELECT * FROM unnest(\(ids)::text[], \(events.map(\.type))::text[], \(bodies)::text[])
            """)
        var deliveries: [(key: String, payload: SandboxDelivery, due: Date)] = []
        for id in ids {
            var delay: TimeInterval = 0
            if chaos, Int.random(in: 0..<10) < 3 { delay = Double.random(in: 0.5...3) }
            deliveries.append((id, SandboxDelivery(eventId: id), tx.now.addingTimeInterval(delay)))
            if chaos, Int.random(in: 0..<10) < 3 {
                deliveries.append((id + ":again", SandboxDelivery(eventId: id), tx.now.addingTimeInterval(Double.random(in: 0...2))))
            }
        }
        try await tx.schedule(Self.deliver, deliveries)
    }

    /// The delivery jobs, a set at a time: each event POSTed signed, all at once; the delivered
    /// ones marked with one statement. Anything but a 2xx fails the set, whose jobs then run alone
    /// and are retried with backoff (an event delivered twice is what webhooks promise anyway).
    func deliver(_ deliveries: [SandboxDelivery], in tx: Transaction) async throws {
        var bodies: [String: String] = [:]
        for try await (id, body) in try await tx.query("""
            SELECT id, body FROM sandbox_events WHERE id = ANY(\(deliveries.map(\.eventId)))
            """).decode((String, String).self) {
            bodies[id] = body
        }
        // One POST per delivery: chaos's second delivery of an event may be in the same set.
        let posts = deliveries.compactMap { bodies[$0.eventId] }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for body in posts { group.addTask { try await post(body) } }
            try await group.waitForAll()
        }
        try await tx.query("""
            UPDATE sandbox_events SET delivered_at = now(), deliveries = deliveries + 1 WHERE id = ANY(\(Array(bodies.keys)))
            """)
    }

    private func post(_ body: String) async throws {
        let bytes = Array(body.utf8)
        var request = HTTPClientRequest(url: webhookURL)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Sandbox-Signature", value: signature.header(for: bytes, at: Date()))
        request.body = .bytes(ByteBuffer(bytes: bytes))
        let response = try await httpClient.execute(request, timeout: .seconds(10))
        _ = try? await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(response.status.code) else { throw SandboxError.webhookRefused(Int(response.status.code)) }
    }

    enum SandboxError: Error, Equatable {
        case webhookRefused(Int)
    }

    // MARK: Rows

    static let intentFields = "id, status, amount, currency, fee, failure_code, failure_message, metadata::text, client_secret, created_at"
    static let intentColumns = "SELECT \(intentFields) FROM sandbox_payment_intents"

    private func intent(where column: String, is value: String, in tx: Transaction) async throws -> ProviderPaymentIntent? {
        let rows = column == "id"
            ? try await tx.query("\(unescaped: Self.intentColumns) WHERE id = \(value)")
            : try await tx.query("\(unescaped: Self.intentColumns) WHERE idempotency_key = \(value)")
        return try await Self.intents(rows).first
    }

    /// Intents read with their idempotency key in front (`SELECT idempotency_key, intentFields`).
    static func keyedIntents(_ rows: PostgresRowSequence) async throws -> [(String, ProviderPaymentIntent)] {
        var result: [(String, ProviderPaymentIntent)] = []
        for try await (key, id, status, amount, currency, fee, code, message, metadata, secret, created)
            in rows.decode((String, String, String, Int64, String, Int64, String?, String?, String, String, Date).self) {
            result.append((key, try intent(id, status, amount, currency, fee, code, message, metadata, secret, created)))
        }
        return result
    }

    static func intent(_ id: String, _ status: String, _ amount: Int64, _ currency: String, _ fee: Int64, _ code: String?, _ message: String?,
                       _ metadata: String, _ secret: String, _ created: Date) throws -> ProviderPaymentIntent {
        let currency = try Currency(code: currency)
        let meta = (try? JSONDecoder().decode([String: String].self, from: Data(metadata.utf8))) ?? [:]
        return ProviderPaymentIntent(id: id, status: .init(rawValue: status) ?? .processing, amount: Money(amount: amount, currency: currency),
                                     fee: Money(amount: fee, currency: currency), failureCode: code, failureMessage: message,
                                     metadata: meta, clientSecret: secret, created: created)
    }

    static func intents(_ rows: PostgresRowSequence) async throws -> [ProviderPaymentIntent] {
        var result: [ProviderPaymentIntent] = []
        for try await (id, status, amount, currency, fee, code, message, metadata, secret, created)
            in rows.decode((String, String, Int64, String, Int64, String?, String?, String, String, Date).self) {
            result.append(try intent(id, status, amount, currency, fee, code, message, metadata, secret, created))
        }
        return result
    }

    private func refund(idempotencyKey: String, in tx: Transaction) async throws -> ProviderRefund? {
        let rows = try await tx.query("SELECT id, payment_intent_id, amount, currency, status FROM sandbox_refunds WHERE idempotency_key = \(idempotencyKey)")
        for try await (id, intent, amount, currency, status) in rows.decode((String, String, Int64, String, String).self) {
            return ProviderRefund(id: id, paymentIntent: intent, amount: try Money(amount: amount, currencyCode: currency),
                                  status: .init(rawValue: status) ?? .pending)
        }
        return nil
    }

    // MARK: Wire shapes (Stripe's field names)

    struct EventBody<Object: Encodable & Sendable>: Encodable, Sendable {
        var id: String
        var object = "event"
        var type: String
        var created: Int64
        var livemode = false
        var data: DataObject

        struct DataObject: Encodable, Sendable {
            var object: Object
        }
    }

    struct IntentObject: Encodable, Sendable {
        var id: String
        var object = "payment_intent"
        var amount: Int64
        var currency: String
        var status: String
        var metadata: [String: String]
        var last_payment_error: PaymentError?
        var created: Int64

        struct PaymentError: Encodable, Sendable {
            var code: String
            var message: String?
        }

        init(_ intent: ProviderPaymentIntent) {
            id = intent.id
            amount = intent.amount.amount
            currency = intent.amount.currency.code.lowercased()
            status = intent.status.rawValue
            metadata = intent.metadata
            last_payment_error = intent.failureCode.map { PaymentError(code: $0, message: intent.failureMessage) }
            created = Int64(intent.created.timeIntervalSince1970)
        }
    }

    struct RefundObject: Encodable, Sendable {
        var id: String
        var object = "refund"
        var amount: Int64
        var currency: String
        var payment_intent: String
        var status: String

        init(_ refund: ProviderRefund) {
            id = refund.id
            amount = refund.amount.amount
            currency = refund.amount.currency.code.lowercased()
            payment_intent = refund.paymentIntent
            status = refund.status.rawValue
        }
    }
}

extension SandboxProvider {
    struct DisputeObject: Encodable, Sendable {
        var id: String
        var object = "dispute"
        var amount: Int64
        var currency: String
        var payment_intent: String
        var status: String
        var reason: String?

        init(_ dispute: ProviderDispute) {
            id = dispute.id
            amount = dispute.amount.amount
            currency = dispute.amount.currency.code.lowercased()
            payment_intent = dispute.paymentIntent
            status = dispute.status
            reason = dispute.reason
        }
    }
}

/// Reads the envelope of a Stripe-shaped event: `{id, type, created, data: {object: {id, object}}}`.
enum WebhookEnvelope {
    private struct Envelope: Decodable {
        var id: String
        var type: String
        var created: Int64
        var data: DataObject

        struct DataObject: Decodable {
            var object: Object
        }

        struct Object: Decodable {
            var id: String
            var object: String
        }
    }

    static func parse(_ body: [UInt8]) throws -> ProviderEvent {
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(body)) else {
            throw ProviderError.invalidRequest("expected {id, type, created, data: {object: {id, object}}}")
        }
        return ProviderEvent(id: envelope.id, type: envelope.type, objectType: envelope.data.object.object, objectId: envelope.data.object.id,
                             created: Date(timeIntervalSince1970: TimeInterval(envelope.created)))
    }
}
