import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import Testing
@testable import Billing
@testable import Platform

/// The Stripe adapter against a local stand-in for Stripe's API that checks the wire format and
/// answers with Stripe-shaped objects: calls, declines, retries and their idempotency keys, webhooks.
@Suite struct StripeProviderTests {
    static let webhookSecret = "whsec_standin"

    // MARK: Calls

    @Test func customerAttachAndChargeSpeakStripesWireFormat() async throws {
        try await withStandIn { provider, standIn in
            let vendor = UUID()
            let customer = try await provider.createCustomer(NewCustomer(vendorId: vendor, description: "Kennel & Co"), idempotencyKey: "vendor:1:customer")
            let method = try await provider.attachPaymentMethod("pm_card_visa", to: customer.id, idempotencyKey: "vendor:1:method")
            let intent = try await provider.charge(
                ChargeRequest(amount: Money(amount: 1250, currency: .gbp), customer: customer.id, paymentMethod: method.id,
                              description: "Kennel plan, March", metadata: ["invoice_id": "inv_42", "attempt": "1"], transferGroup: "order_7"),
                idempotencyKey: "invoice:inv_42:attempt:1")

            #expect(customer == ProviderCustomer(id: "cus_standin"))
            #expect(method == ProviderPaymentMethod(id: "pm_1Visa", brand: "visa", last4: "4242"))
            #expect(intent.status == .succeeded)
            #expect(intent.amount == Money(amount: 1250, currency: .gbp))
            #expect(intent.fee == Money(amount: 56, currency: .gbp), "2.9 % + 20p, read from the expanded balance transaction")
            #expect(intent.metadata == ["invoice_id": "inv_42", "attempt": "1"])
            #expect(intent.failureCode == nil)

            let hits = standIn.hits
            #expect(hits.map(\.path) == ["/v1/customers", "/v1/payment_methods/pm_card_visa/attach", "/v1/payment_intents"])
            #expect(hits.map(\.idempotencyKey) == ["vendor:1:customer", "vendor:1:method", "invoice:inv_42:attempt:1"])
            #expect(hits[0].form["description"] == "Kennel & Co")
            #expect(hits[0].form["metadata[vendor_id]"] == vendor.uuidString.lowercased())
            #expect(hits[1].form == ["customer": "cus_standin"])
            let charge = hits[2].form
            #expect(charge["amount"] == "1250")
            #expect(charge["currency"] == "gbp")
            #expect(charge["customer"] == "cus_standin")
            #expect(charge["payment_method"] == "pm_1Visa")
            #expect(charge["confirm"] == "true")
            #expect(charge["off_session"] == "true")
            #expect(charge["description"] == "Kennel plan, March")
            #expect(charge["metadata[invoice_id]"] == "inv_42")
            #expect(charge["metadata[attempt]"] == "1")
            #expect(charge["transfer_group"] == "order_7")
            #expect(charge["expand[]"] == "latest_charge.balance_transaction")
            #expect(charge["automatic_payment_methods[allow_redirects]"] == "never", "off session nobody can follow a redirect")
            #expect(hits[2].body.contains("metadata[invoice_id]=inv_42"), "Stripe's bracket notation, on the wire")
            #expect(hits[0].body.contains("description=Kennel%20%26%20Co"), "values are percent-encoded")
        }
    }

    @Test func anOrdersIntentIsLeftForTheBuyersClientToConfirm() async throws {
        try await withStandIn { provider, standIn in
            let intent = try await provider.createPaymentIntent(
                PaymentIntentRequest(amount: Money(amount: 90_000, currency: .eur), description: "Order 7", metadata: ["order_id": "o7"],
                                     transferGroup: "o7"),
                idempotencyKey: "order:o7:intent")
            #expect(intent.status == .requiresPaymentMethod && intent.clientSecret == "pi_standin_secret_x")
            #expect(intent.amount == Money(amount: 90_000, currency: .eur) && intent.metadata == ["order_id": "o7"])
            let hit = try #require(standIn.hits.first)
            #expect(hit.path == "/v1/payment_intents" && hit.idempotencyKey == "order:o7:intent")
            #expect(hit.form == ["amount": "90000", "currency": "eur", "automatic_payment_methods[enabled]": "true", "description": "Order 7",
                                 "metadata[order_id]": "o7", "transfer_group": "o7"],
                    "no customer, no method, not confirmed: the buyer's client confirms it")
        }
    }

    @Test func anIntentIsReadWithItsFeeAndAnUnknownOneIsNotFound() async throws {
        try await withStandIn { provider, standIn in
            let intent = try await provider.paymentIntent("pi_standin")
            #expect(intent.id == "pi_standin")
            #expect(intent.fee == Money(amount: 56, currency: .gbp))
            #expect(standIn.hits.first?.method == "GET")
            #expect(standIn.hits.first?.query["expand[]"] == "latest_charge.balance_transaction")

            await #expect(throws: ProviderError.notFound("No such payment_intent: 'pi_missing'")) {
                try await provider.paymentIntent("pi_missing")
            }
            #expect(standIn.hits.count == 2, "a 404 is not retried")
        }
    }

    @Test func refundsAndTransfersSendTheirParameters() async throws {
        try await withStandIn { provider, standIn in
            let refund = try await provider.refund(
                RefundRequest(paymentIntent: "pi_standin", amount: Money(amount: 500, currency: .gbp), reason: "requested_by_customer",
                              metadata: ["order_id": "order_7"]),
                idempotencyKey: "refund:1")
            #expect(refund == ProviderRefund(id: "re_standin", paymentIntent: "pi_standin", amount: Money(amount: 500, currency: .gbp), status: .succeeded))
            #expect(standIn.hits[0].form == ["payment_intent": "pi_standin", "amount": "500", "reason": "requested_by_customer",
                                             "metadata[order_id]": "order_7"])

            // A reason outside Stripe's enum would be refused by Stripe: it travels in the metadata instead.
            _ = try await provider.refund(RefundRequest(paymentIntent: "pi_standin", amount: nil, reason: "the vendor cancelled"),
                                          idempotencyKey: "refund:2")
            #expect(standIn.hits[1].form == ["payment_intent": "pi_standin", "metadata[reason]": "the vendor cancelled"])

            let transfer = try await provider.transfer(
                TransferRequest(amount: Money(amount: 1000, currency: .gbp), destination: "acct_vendor", transferGroup: "order_7"),
                idempotencyKey: "transfer:1")
            #expect(transfer == ProviderTransfer(id: "tr_standin", amount: Money(amount: 1000, currency: .gbp), destination: "acct_vendor"))
            #expect(standIn.hits[2].form == ["amount": "1000", "currency": "gbp", "destination": "acct_vendor", "transfer_group": "order_7"])
            #expect(standIn.hits.map(\.idempotencyKey) == ["refund:1", "refund:2", "transfer:1"])
        }
    }

    // MARK: Cancels

    @Test func anUnpaidIntentIsCanceledAsAbandoned() async throws {
        try await withStandIn { provider, standIn in
            let intent = try await provider.cancelPaymentIntent("pi_standin", idempotencyKey: "order:o7:cancel")
            #expect(intent.id == "pi_standin")
            #expect(intent.status == .canceled && intent.status.isFinal)
            #expect(intent.amount == Money(amount: 90_000, currency: .eur) && intent.metadata == ["order_id": "o7"])
            #expect(intent.fee == .zero(.eur), "nothing was charged")

            let hit = try #require(standIn.hits.first)
            #expect(standIn.hits.count == 1)
            #expect(hit.method == "POST" && hit.path == "/v1/payment_intents/pi_standin/cancel")
            #expect(hit.idempotencyKey == "order:o7:cancel")
            #expect(hit.form == ["cancellation_reason": "abandoned"])
        }
    }

    @Test func aPaidIntentCannotBeCanceledAndIsAskedOnlyOnce() async throws {
        try await withStandIn { provider, standIn in
            // Stripe's message, read past the intent its error carries: a 400, not a decline.
            await #expect(throws: ProviderError.invalidRequest("This PaymentIntent has a status of succeeded and cannot be canceled.")) {
                try await provider.cancelPaymentIntent("pi_succeeded", idempotencyKey: "order:o8:cancel")
            }
            #expect(standIn.hits.map(\.path) == ["/v1/payment_intents/pi_succeeded/cancel"], "a 400 is not retried")
            #expect(standIn.hits.first?.idempotencyKey == "order:o8:cancel")
        }
    }

    // MARK: Payout accounts

    static let onboardingURLs = (returnURL: "https://market.example/vendor/payouts?onboarded=1", refreshURL: "https://market.example/vendor/payouts/refresh")

    func onboarding(_ vendor: UUID = UUID()) -> NewPayoutAccount {
        NewPayoutAccount(vendorId: vendor, returnURL: Self.onboardingURLs.returnURL, refreshURL: Self.onboardingURLs.refreshURL)
    }

    func expectOnboardingLink(_ hit: StripeHit, account: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(hit.method == "POST" && hit.path == "/v1/account_links", sourceLocation: sourceLocation)
        #expect(hit.form == ["account": account, "type": "account_onboarding",
                             "return_url": Self.onboardingURLs.returnURL, "refresh_url": Self.onboardingURLs.refreshURL], sourceLocation: sourceLocation)
        #expect(hit.idempotencyKey?.hasPrefix("account-link:\(account):") == true, sourceLocation: sourceLocation)
    }

    @Test func aNewPayoutAccountIsPendingWithAnOnboardingLink() async throws {
        try await withStandIn { provider, standIn in
            let vendor = UUID()
            let key = "vendor:\(vendor.lowercased):payout-account"
            let account = try await provider.createPayoutAccount(onboarding(vendor), idempotencyKey: key)
            #expect(account == ProviderPayoutAccount(id: "acct_standin", status: .pending,
                                                     onboardingURL: "https://connect.stripe.com/setup/e/acct_standin/Lk1"))

            let hits = standIn.hits
            #expect(hits.map(\.path) == ["/v1/accounts", "/v1/account_links"])
            #expect(hits[0].method == "POST" && hits[0].idempotencyKey == key)
            #expect(hits[0].form == ["type": "express", "capabilities[transfers][requested]": "true",
                                     "metadata[vendor_id]": vendor.uuidString.lowercased()])
            #expect(hits[0].body.contains("capabilities[transfers][requested]=true"), "Stripe's bracket notation, on the wire")
            expectOnboardingLink(hits[1], account: "acct_standin")
            #expect(hits[1].idempotencyKey != key, "the account's key would replay the account, not make a link")
            #expect(hits[1].body.contains("return_url=https%3A%2F%2Fmarket.example%2Fvendor%2Fpayouts%3Fonboarded%3D1"),
                    "the URLs are percent-encoded")
        }
    }

    @Test func anAccountWhoseTransfersAreActiveIsActiveWithNoLink() async throws {
        let script: StripeStandIn.Script = { hit, _ in
            hit.path == "/v1/accounts" ? StandInAnswer(status: 200, json: StripeStandIn.account(id: "acct_active", transfers: "active", metadata: [])) : nil
        }
        try await withStandIn(script: script) { provider, standIn in
            let created = try await provider.createPayoutAccount(onboarding(), idempotencyKey: "vendor:1:payout-account")
            #expect(created == ProviderPayoutAccount(id: "acct_active", status: .active, onboardingURL: nil))

            let read = try await provider.payoutAccount("acct_active", onboarding: onboarding())
            #expect(read == ProviderPayoutAccount(id: "acct_active", status: .active, onboardingURL: nil))

            #expect(standIn.hits.map(\.path) == ["/v1/accounts", "/v1/accounts/acct_active"], "no account link for an onboarded account")
            #expect(standIn.hits.map(\.method) == ["POST", "GET"])
        }
    }

    @Test func readingAPendingAccountMakesAFreshLinkEachTime() async throws {
        try await withStandIn { provider, standIn in
            let first = try await provider.payoutAccount("acct_standin", onboarding: onboarding())
            let second = try await provider.payoutAccount("acct_standin", onboarding: onboarding())
            #expect(first == ProviderPayoutAccount(id: "acct_standin", status: .pending, onboardingURL: "https://connect.stripe.com/setup/e/acct_standin/Lk1"))
            #expect(second == ProviderPayoutAccount(id: "acct_standin", status: .pending, onboardingURL: "https://connect.stripe.com/setup/e/acct_standin/Lk2"),
                    "links are single-use: each read makes a new one")

            let hits = standIn.hits
            #expect(hits.map(\.path) == ["/v1/accounts/acct_standin", "/v1/account_links", "/v1/accounts/acct_standin", "/v1/account_links"])
            for read in [hits[0], hits[2]] {
                #expect(read.method == "GET" && read.query.isEmpty && read.idempotencyKey == nil)
            }
            expectOnboardingLink(hits[1], account: "acct_standin")
            expectOnboardingLink(hits[3], account: "acct_standin")
            #expect(hits[1].idempotencyKey != hits[3].idempotencyKey, "a second link is a new request, not a replay of the first")
        }
    }

    @Test func aFailedLinkIsRetriedWithItsOwnKeyAndTheAccountIsMadeOnce() async throws {
        let script: StripeStandIn.Script = { hit, count in
            hit.path == "/v1/account_links" && count == 1 ? StandInAnswer.error(500, type: "api_error", message: "An unknown error occurred") : nil
        }
        try await withStandIn(script: script) { provider, standIn in
            let account = try await provider.createPayoutAccount(onboarding(), idempotencyKey: "vendor:2:payout-account")
            #expect(account == ProviderPayoutAccount(id: "acct_standin", status: .pending, onboardingURL: "https://connect.stripe.com/setup/e/acct_standin/Lk2"))

            let hits = standIn.hits
            #expect(hits.map(\.path) == ["/v1/accounts", "/v1/account_links", "/v1/account_links"])
            #expect(hits[1].idempotencyKey == hits[2].idempotencyKey, "the retry is the same request")
            expectOnboardingLink(hits[2], account: "acct_standin")
        }
    }

    // MARK: Declines

    @Test func aDeclinedChargeIsAnIntentNotAnError() async throws {
        try await withStandIn { provider, standIn in
            let declined = try await provider.charge(charge(paymentMethod: "pm_1CustomerFail"), idempotencyKey: "invoice:1:attempt:1")
            #expect(declined.status == .requiresPaymentMethod)
            #expect(declined.failureCode == "card_declined")
            #expect(declined.failureMessage == "Your card was declined.")
            #expect(declined.fee == .zero(.gbp))
            #expect(declined.status.isFinal)

            // The decline code is more precise than the error's code, when Stripe gives one.
            let insufficient = try await provider.charge(charge(paymentMethod: "pm_1InsufficientFunds"), idempotencyKey: "invoice:2:attempt:1")
            #expect(insufficient.failureCode == "insufficient_funds")
            #expect(standIn.hits.count == 2, "a 402 is not retried")
        }
    }

    @Test func aCardRefusedWhenAttachedThrowsCardDeclined() async throws {
        try await withStandIn { provider, standIn in
            await #expect(throws: ProviderError.cardDeclined(code: "generic_decline", message: "Your card was declined.")) {
                try await provider.attachPaymentMethod("pm_card_chargeDeclined", to: "cus_standin", idempotencyKey: "vendor:1:method")
            }
            #expect(standIn.hits.count == 1)
        }
    }

    // MARK: Retries

    @Test func aServerErrorIsRetriedWithTheSameIdempotencyKey() async throws {
        let script: StripeStandIn.Script = { _, count in
            count == 1 ? StandInAnswer.error(500, type: "api_error", message: "An unknown error occurred") : nil
        }
        try await withStandIn(script: script) { provider, standIn in
            let customer = try await provider.createCustomer(NewCustomer(vendorId: UUID(), description: "Kennel"), idempotencyKey: "vendor:9:customer")
            #expect(customer.id == "cus_standin")
            #expect(standIn.hits.map(\.idempotencyKey) == ["vendor:9:customer", "vendor:9:customer"])
        }
    }

    @Test func aLockTimeoutStripeSaysToRetryIsRetried() async throws {
        let script: StripeStandIn.Script = { _, count in
            count == 1 ? StandInAnswer.error(409, type: "invalid_request_error", code: "lock_timeout", message: "The object was locked",
                                             headers: ["Stripe-Should-Retry": "true"]) : nil
        }
        try await withStandIn(script: script) { provider, standIn in
            let intent = try await provider.charge(charge(paymentMethod: "pm_1Visa"), idempotencyKey: "invoice:3:attempt:1")
            #expect(intent.status == .succeeded)
            #expect(standIn.hits.map(\.idempotencyKey) == ["invoice:3:attempt:1", "invoice:3:attempt:1"])
        }
    }

    @Test func aServerErrorStripeSaysNotToRetryIsNotRetried() async throws {
        let script: StripeStandIn.Script = { _, _ in
            StandInAnswer.error(503, type: "api_error", message: "Try again later", headers: ["Stripe-Should-Retry": "false"])
        }
        try await withStandIn(script: script) { provider, standIn in
            await #expect(throws: ProviderError.unavailable("Try again later")) {
                try await provider.charge(charge(paymentMethod: "pm_1Visa"), idempotencyKey: "invoice:4:attempt:1")
            }
            #expect(standIn.hits.count == 1)
        }
    }

    @Test func aBadRequestIsNotRetriedEvenWhenStripeWouldAllowIt() async throws {
        let script: StripeStandIn.Script = { _, _ in
            StandInAnswer.error(400, type: "invalid_request_error", code: "amount_too_small", message: "Amount must be at least 30 pence",
                                headers: ["Stripe-Should-Retry": "true"])
        }
        try await withStandIn(script: script) { provider, standIn in
            await #expect(throws: ProviderError.invalidRequest("Amount must be at least 30 pence")) {
                try await provider.charge(charge(paymentMethod: "pm_1Visa"), idempotencyKey: "invoice:5:attempt:1")
            }
            #expect(standIn.hits.count == 1)
        }
    }

    @Test func exhaustedRetriesAreUnavailable() async throws {
        let script: StripeStandIn.Script = { _, _ in StandInAnswer.error(500, type: "api_error", message: "An unknown error occurred") }
        try await withStandIn(script: script) { provider, standIn in
            await #expect(throws: ProviderError.unavailable("An unknown error occurred")) {
                try await provider.paymentIntent("pi_standin")
            }
            #expect(standIn.hits.count == 3, "the first try and maxNetworkRetries (2) more")
        }
    }

    @Test func anUnreachableStripeIsUnavailable() async throws {
        let client = Self.httpClient()
        // Nothing listens on port 1: each try is refused at once.
        let provider = StripeProvider(secretKey: StripeStandIn.secretKey, webhookSecret: Self.webhookSecret,
                                      baseURL: URL(string: "http://127.0.0.1:1")!, httpClient: client, retryBaseDelay: .milliseconds(1))
        let error = await #expect(throws: ProviderError.self) {
            try await provider.createCustomer(NewCustomer(vendorId: UUID(), description: "Kennel"), idempotencyKey: "vendor:1:customer")
        }
        try await client.shutdown()
        guard case .unavailable? = error else {
            Issue.record("expected unavailable, got \(String(describing: error))")
            return
        }
    }

    // MARK: Amounts

    @Test func amountsAreInStripesMinorUnits() throws {
        #expect(try StripeAmount.stripe(Money(amount: 1250, currency: .gbp)) == 1250)
        #expect(try StripeAmount.stripe(Money(amount: 500, currency: .jpy)) == 500, "zero-decimal: ¥500 is 500 for both")
        #expect(try StripeAmount.stripe(Money(amount: 12_340, currencyCode: "KWD")) == 12_340, "three decimals for both")
        // ISK has no minor unit in ISO 4217 but two decimals at Stripe; MGA the other way round.
        #expect(try StripeAmount.stripe(Money(amount: 4_000, currencyCode: "ISK")) == 400_000)
        #expect(try StripeAmount.money(400_000, "isk") == Money(amount: 4_000, currencyCode: "ISK"))
        #expect(try StripeAmount.stripe(Money(amount: 150_000, currencyCode: "MGA")) == 1_500)
        #expect(try StripeAmount.money(1_500, "mga") == Money(amount: 150_000, currencyCode: "MGA"))
        #expect(throws: ProviderError.self) { try StripeAmount.stripe(Money(amount: 150_050, currencyCode: "MGA")) }
    }

    // MARK: Webhooks

    static let event = Array(#"""
        {"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1700000000,
         "data":{"object":{"id":"pi_standin","object":"payment_intent","status":"succeeded"}}}
        """#.utf8)

    @Test func aSignedEventIsVerifiedAndRead() throws {
        let provider = StripeProvider(secretKey: "sk_test", webhookSecret: Self.webhookSecret, httpClient: HTTPClient.shared)
        let now = Date()
        let header = WebhookSignature(secret: Self.webhookSecret).header(for: Self.event, at: now.addingTimeInterval(-299))
        let event = try provider.verifyWebhook(body: Self.event, signatureHeader: header, now: now)
        #expect(event == ProviderEvent(id: "evt_1", type: "payment_intent.succeeded", objectType: "payment_intent",
                                       objectId: "pi_standin", created: Date(timeIntervalSince1970: 1_700_000_000)))
    }

    @Test func aForgedTamperedOrStaleEventIsRefused() throws {
        let provider = StripeProvider(secretKey: "sk_test", webhookSecret: Self.webhookSecret, httpClient: HTTPClient.shared)
        let now = Date()
        let signer = WebhookSignature(secret: Self.webhookSecret)
        var tampered = Self.event
        tampered[try #require(tampered.firstIndex(of: UInt8(ascii: "1")))] = UInt8(ascii: "2")
        let refused: [(String, [UInt8], String?)] = [
            ("wrong secret", Self.event, WebhookSignature(secret: "whsec_other").header(for: Self.event, at: now)),
            ("tampered body", tampered, signer.header(for: Self.event, at: now)),
            ("301 s old", Self.event, signer.header(for: Self.event, at: now.addingTimeInterval(-301))),
            ("no header", Self.event, nil),
        ]
        for (why, body, header) in refused {
            let error = #expect(throws: ProviderError.self, "\(why)") {
                try provider.verifyWebhook(body: body, signatureHeader: header, now: now)
            }
            guard case .invalidSignature? = error else {
                Issue.record("\(why): expected invalidSignature, got \(String(describing: error))")
                continue
            }
        }
    }

    @Test func aSignedButMalformedEventIsAnInvalidRequest() {
        let provider = StripeProvider(secretKey: "sk_test", webhookSecret: Self.webhookSecret, httpClient: HTTPClient.shared)
        let body = Array(#"{"id":"evt_1","type":"payment_intent.succeeded"}"#.utf8)
        let header = WebhookSignature(secret: Self.webhookSecret).header(for: body, at: Date())
        #expect(throws: ProviderError.invalidRequest("expected {id, type, created, data: {object: {id, object}}}")) {
            try provider.verifyWebhook(body: body, signatureHeader: header, now: Date())
        }
    }

    // MARK: Support

    func charge(paymentMethod: String) -> ChargeRequest {
        ChargeRequest(amount: Money(amount: 1250, currency: .gbp), customer: "cus_standin", paymentMethod: paymentMethod,
                      description: "Kennel plan", metadata: ["invoice_id": "inv_1"])
    }

    /// As the gateway configures its client: a refused connection fails at once instead of being retried until the deadline.
    static func httpClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Runs `body` with a provider pointed at a fresh stand-in on an ephemeral port, then stops both;
    /// afterwards no request may have broken Stripe's wire format.
    func withStandIn(script: @escaping StripeStandIn.Script = { _, _ in nil },
                     _ body: @escaping @Sendable (StripeProvider, StripeStandIn) async throws -> Void) async throws {
        let standIn = StripeStandIn(script: script)
        let router = Router()
        router.get("**") { request, _ in try await standIn.respond(to: request) }
        router.post("**") { request, _ in try await standIn.respond(to: request) }
        let port = Mutex<Int?>(nil)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } },
                              logger: Self.logger)
        try await withinLimit(.seconds(60)) {
            try await runServices([app]) {
                try await eventually(within: .seconds(10)) { port.withLock { $0 } != nil }
                let baseURL = try #require(URL(string: "http://127.0.0.1:\(port.withLock { $0 } ?? 0)"))
                let client = Self.httpClient()
                let provider = StripeProvider(secretKey: StripeStandIn.secretKey, webhookSecret: Self.webhookSecret, baseURL: baseURL,
                                              httpClient: client, timeout: .seconds(10), retryBaseDelay: .milliseconds(1))
                do {
                    try await body(provider, standIn)
                } catch {
                    try await client.shutdown()
                    throw error
                }
                try await client.shutdown()
            }
        }
        #expect(standIn.violations.isEmpty, "wire format: \(standIn.violations)")
    }

    static let logger: Logger = {
        var logger = Logger(label: "stripe-provider-tests")
        logger.logLevel = .critical
        return logger
    }()
}

// MARK: The stand-in

/// A request as the stand-in received it, its form body and query decoded.
struct StripeHit: Sendable {
    var method: String
    var path: String
    var query: [String: String]
    var body: String
    var form: [String: String]
    var idempotencyKey: String?
}

/// What the stand-in answers: a status, a JSON body and extra headers.
struct StandInAnswer: Sendable {
    var status: Int
    var json: String
    var headers: [String: String] = [:]

    /// Stripe's error envelope.
    static func error(_ status: Int, type: String, code: String? = nil, declineCode: String? = nil, message: String,
                      paymentIntent: String? = nil, headers: [String: String] = [:]) -> StandInAnswer {
        var fields = [#""type":"\#(type)""#, #""message":"\#(message)""#]
        if let code { fields.append(#""code":"\#(code)""#) }
        if let declineCode { fields.append(#""decline_code":"\#(declineCode)""#) }
        if let paymentIntent { fields.append(#""payment_intent":\#(paymentIntent)"#) }
        return StandInAnswer(status: status, json: #"{"error":{\#(fields.joined(separator: ","))}}"#, headers: headers)
    }
}

/// A local stand-in for Stripe's API. Every request is checked the way Stripe would refuse it
/// (key, pinned version, form-encoded body, an idempotency key on every POST), recorded, and
/// answered by the test's script or else as Stripe answers it for its test payment methods.
final class StripeStandIn: Sendable {
    /// A hit and how many times its path has been hit so far (1 for the first); nil answers as Stripe would.
    typealias Script = @Sendable (StripeHit, Int) -> StandInAnswer?

    static let secretKey = "sk_test_standin"
    private let script: Script
    private let state = Mutex<(hits: [StripeHit], violations: [String])>(([], []))

    init(script: @escaping Script) { self.script = script }

    var hits: [StripeHit] { state.withLock { $0.hits } }
    var violations: [String] { state.withLock { $0.violations } }

    func respond(to request: Request) async throws -> Response {
        let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
        var problems: [String] = []
        func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { request.headers[$0] } }

        if header("Authorization") != "Bearer \(Self.secretKey)" { problems.append("Authorization is not the bearer secret key") }
        if header("Stripe-Version") != StripeProvider.pinnedAPIVersion { problems.append("Stripe-Version is \(header("Stripe-Version") ?? "missing")") }
        let isPost = request.method == .post
        if isPost {
            if header("Idempotency-Key")?.isEmpty ?? true { problems.append("POST \(request.uri.path) has no Idempotency-Key") }
            if header("Content-Type") != "application/x-www-form-urlencoded" { problems.append("POST \(request.uri.path) is not form-encoded") }
        }
        let form = isPost ? Self.decodeForm(body, problems: &problems) : [:]
        let query = Self.decodeForm(request.uri.query ?? "", problems: &problems)
        let hit = StripeHit(method: isPost ? "POST" : "GET", path: request.uri.path, query: query, body: body, form: form,
                            idempotencyKey: header("Idempotency-Key"))
        let count = state.withLock { state in
            state.hits.append(hit)
            state.violations += problems
            return state.hits.filter { $0.path == hit.path }.count
        }

        let answer = problems.isEmpty
            ? script(hit, count) ?? Self.asStripe(hit, count: count)
            : StandInAnswer.error(400, type: "invalid_request_error", message: problems.joined(separator: "; "))
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        for (name, value) in answer.headers { if let name = HTTPField.Name(name) { headers[name] = value } }
        return Response(status: HTTPResponse.Status(code: answer.status), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: answer.json)))
    }

    /// `application/x-www-form-urlencoded`, strictly: every pair has a name and decodes; no name twice.
    static func decodeForm(_ text: String, problems: inout [String]) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2,
                  let name = parts[0].replacingOccurrences(of: "+", with: " ").removingPercentEncoding, !name.isEmpty,
                  let value = parts[1].replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                problems.append("not form-encoded: \(pair)")
                continue
            }
            if fields[name] != nil { problems.append("\(name) sent twice") }
            fields[name] = value
        }
        return fields
    }

    /// As Stripe answers, for the test payment methods and accounts the tests use; `count` as the script is given it.
    static func asStripe(_ hit: StripeHit, count: Int) -> StandInAnswer {
        let form = hit.form
        switch (hit.method, hit.path) {
        case ("POST", "/v1/customers"):
            return StandInAnswer(status: 200, json: #"{"id":"cus_standin","object":"customer","description":"\#(form["description"] ?? "")"}"#)

        case ("POST", "/v1/payment_methods/pm_card_visa/attach"):
            return StandInAnswer(status: 200, json: #"""
                {"id":"pm_1Visa","object":"payment_method","type":"card","customer":"\#(form["customer"] ?? "")",
                 "card":{"brand":"visa","last4":"4242","exp_month":12,"exp_year":2034}}
                """#)
        case ("POST", "/v1/payment_methods/pm_card_chargeDeclined/attach"):
            return .error(402, type: "card_error", code: "card_declined", declineCode: "generic_decline", message: "Your card was declined.")

        case ("POST", "/v1/payment_intents") where form["confirm"] == nil:
            // An intent for the buyer's client to confirm.
            guard let amount = Int(form["amount"] ?? ""), let currency = form["currency"] else {
                return .error(400, type: "invalid_request_error", message: "Missing required param: amount.")
            }
            let metadata = form.filter { $0.key.hasPrefix("metadata[") }
                .map { (String($0.key.dropFirst("metadata[".count).dropLast()), $0.value) }
            return StandInAnswer(status: 200, json: paymentIntent(amount: amount, currency: currency, status: "requires_payment_method",
                                                                  metadata: metadata, expanded: false))
        case ("POST", "/v1/payment_intents"):
            guard let amount = Int(form["amount"] ?? ""), let currency = form["currency"], form["confirm"] == "true" else {
                return .error(400, type: "invalid_request_error", message: "Missing required param: amount.")
            }
            let expanded = form["expand[]"] == StripeProvider.expandFee
            let metadata = form.filter { $0.key.hasPrefix("metadata[") }
                .map { (String($0.key.dropFirst("metadata[".count).dropLast()), $0.value) }
            switch form["payment_method"] {
            case "pm_1CustomerFail":
                let intent = paymentIntent(amount: amount, currency: currency, status: "requires_payment_method", metadata: metadata, expanded: false)
                return .error(402, type: "card_error", code: "card_declined", message: "Your card was declined.", paymentIntent: intent)
            case "pm_1InsufficientFunds":
                let intent = paymentIntent(amount: amount, currency: currency, status: "requires_payment_method", metadata: metadata, expanded: false)
                return .error(402, type: "card_error", code: "card_declined", declineCode: "insufficient_funds",
                              message: "Your card has insufficient funds.", paymentIntent: intent)
            default:
                return StandInAnswer(status: 200, json: paymentIntent(amount: amount, currency: currency, status: "succeeded", metadata: metadata, expanded: expanded))
            }

        case ("GET", "/v1/payment_intents/pi_missing"):
            return .error(404, type: "invalid_request_error", code: "resource_missing", message: "No such payment_intent: 'pi_missing'")
        case ("GET", "/v1/payment_intents/pi_standin"):
            let expanded = hit.query["expand[]"] == StripeProvider.expandFee
            return StandInAnswer(status: 200, json: paymentIntent(amount: 1250, currency: "gbp", status: "succeeded", metadata: [], expanded: expanded))

        case ("POST", "/v1/payment_intents/pi_standin/cancel"):
            guard let reason = form["cancellation_reason"], ["duplicate", "fraudulent", "requested_by_customer", "abandoned"].contains(reason) else {
                return .error(400, type: "invalid_request_error",
                              message: "Invalid cancellation_reason: must be one of duplicate, fraudulent, requested_by_customer, or abandoned")
            }
            return StandInAnswer(status: 200, json: paymentIntent(amount: 90_000, currency: "eur", status: "canceled", metadata: [("order_id", "o7")],
                                                                  expanded: false, cancellationReason: reason))
        case ("POST", "/v1/payment_intents/pi_succeeded/cancel"):
            // A paid intent cannot be canceled; Stripe's error carries the intent as it stands.
            let intent = paymentIntent(id: "pi_succeeded", amount: 1250, currency: "gbp", status: "succeeded", metadata: [], expanded: false)
            return .error(400, type: "invalid_request_error", code: "payment_intent_unexpected_state",
                          message: "This PaymentIntent has a status of succeeded and cannot be canceled.", paymentIntent: intent)

        case ("POST", "/v1/accounts"):
            guard ["express", "standard", "custom"].contains(form["type"] ?? "") else {
                return .error(400, type: "invalid_request_error", message: "Invalid type: must be one of standard, express, or custom")
            }
            let metadata = form.filter { $0.key.hasPrefix("metadata[") }
                .map { (String($0.key.dropFirst("metadata[".count).dropLast()), $0.value) }
            // A new Express account receives no transfers until its owner has onboarded.
            return StandInAnswer(status: 200, json: account(id: "acct_standin", transfers: "inactive", metadata: metadata))
        case ("GET", "/v1/accounts/acct_standin"):
            return StandInAnswer(status: 200, json: account(id: "acct_standin", transfers: "inactive", metadata: []))
        case ("GET", "/v1/accounts/acct_active"):
            return StandInAnswer(status: 200, json: account(id: "acct_active", transfers: "active", metadata: []))

        case ("POST", "/v1/account_links"):
            guard let account = form["account"], account.hasPrefix("acct_") else {
                return .error(400, type: "invalid_request_error", message: "Missing required param: account.")
            }
            guard ["account_onboarding", "account_update"].contains(form["type"] ?? "") else {
                return .error(400, type: "invalid_request_error", message: "Invalid type: must be one of account_onboarding or account_update")
            }
            guard form["return_url"] != nil, form["refresh_url"] != nil else {
                return .error(400, type: "invalid_request_error", message: "Missing required param: return_url and refresh_url.")
            }
            // Single-use: each link is a new URL.
            return StandInAnswer(status: 200, json: #"""
                {"object":"account_link","created":1700000000,"expires_at":1700000300,
                 "url":"https://connect.stripe.com/setup/e/\#(account)/Lk\#(count)"}
                """#)

        case ("POST", "/v1/refunds"):
            if let reason = form["reason"], !["duplicate", "fraudulent", "requested_by_customer"].contains(reason) {
                return .error(400, type: "invalid_request_error", message: "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer")
            }
            return StandInAnswer(status: 200, json: #"""
                {"id":"re_standin","object":"refund","amount":\#(form["amount"] ?? "1250"),"currency":"gbp",
                 "payment_intent":"\#(form["payment_intent"] ?? "")","status":"succeeded"}
                """#)

        case ("POST", "/v1/transfers"):
            return StandInAnswer(status: 200, json: #"""
                {"id":"tr_standin","object":"transfer","amount":\#(form["amount"] ?? "0"),"currency":"\#(form["currency"] ?? "")",
                 "destination":"\#(form["destination"] ?? "")","transfer_group":"\#(form["transfer_group"] ?? "")"}
                """#)

        default:
            return .error(404, type: "invalid_request_error", message: "Unrecognized request URL (\(hit.method): \(hit.path))")
        }
    }

    /// A payment intent; its charge's balance transaction (2.9 % + 20 minor units) only when expanded, as Stripe does.
    static func paymentIntent(id: String = "pi_standin", amount: Int, currency: String, status: String, metadata: [(String, String)],
                              expanded: Bool, cancellationReason: String? = nil) -> String {
        let fee = amount * 29 / 1000 + 20
        let charge = status != "succeeded" ? "null"
            : expanded ? #"{"id":"ch_standin","object":"charge","balance_transaction":{"id":"txn_standin","object":"balance_transaction","fee":\#(fee),"currency":"\#(currency)"}}"#
            : #""ch_standin""#
        let metadataJSON = metadata.map { #""\#($0.0)":"\#($0.1)""# }.joined(separator: ",")
        return #"""
            {"id":"\#(id)","object":"payment_intent","amount":\#(amount),"currency":"\#(currency)","status":"\#(status)",
             "created":1700000000,"client_secret":"\#(id)_secret_x","metadata":{\#(metadataJSON)},"latest_charge":\#(charge),
             "cancellation_reason":\#(cancellationReason.map { #""\#($0)""# } ?? "null"),"canceled_at":\#(cancellationReason == nil ? "null" : "1700000600")}
            """#
    }

    /// A connected account; `transfers` is its transfers capability (`inactive`, `pending` or `active`).
    static func account(id: String, transfers: String, metadata: [(String, String)]) -> String {
        let onboarded = transfers == "active"
        let metadataJSON = metadata.map { #""\#($0.0)":"\#($0.1)""# }.joined(separator: ",")
        return #"""
            {"id":"\#(id)","object":"account","type":"express","charges_enabled":\#(onboarded),"payouts_enabled":\#(onboarded),
             "details_submitted":\#(onboarded),"capabilities":{"transfers":"\#(transfers)"},"metadata":{\#(metadataJSON)}}
            """#
    }
}
