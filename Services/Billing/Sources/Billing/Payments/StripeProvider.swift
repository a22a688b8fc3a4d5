import AsyncHTTPClient
import Foundation
import NIOCore
import Platform

/// The payment provider port over Stripe's API: form-encoded requests, JSON answers, one pinned version.
///
/// A call is retried only where Stripe says asking again is safe, and always with the caller's
/// idempotency key, so a retry can never make a second customer, charge, refund or transfer.
public struct StripeProvider: PaymentProvider {
    /// Every request pins this version, so a change of the account's default cannot change the shapes read here.
    public static let pinnedAPIVersion = "2024-06-20"
    public static let defaultBaseURL = URL(string: "https://api.stripe.com")!

    public let name = "stripe"

    let secretKey: String
    let webhookSignature: WebhookSignature
    let baseURL: URL
    let httpClient: HTTPClient
    let apiVersion: String
    let maxNetworkRetries: Int
    let timeout: TimeAmount
    let retryBaseDelay: Duration

    /// `timeout` bounds each attempt; `retryBaseDelay` is the first backoff, doubled on each retry.
    public init(secretKey: String, webhookSecret: String, baseURL: URL = StripeProvider.defaultBaseURL, httpClient: HTTPClient,
                apiVersion: String = StripeProvider.pinnedAPIVersion, maxNetworkRetries: Int = 2, timeout: TimeAmount = .seconds(30),
                retryBaseDelay: Duration = .milliseconds(500)) {
        self.secretKey = secretKey
        self.webhookSignature = WebhookSignature(secret: webhookSecret)
        self.baseURL = baseURL
        self.httpClient = httpClient
        self.apiVersion = apiVersion
        self.maxNetworkRetries = max(0, maxNetworkRetries)
        self.timeout = timeout
        self.retryBaseDelay = retryBaseDelay
    }

    // MARK: The port

    public func createCustomer(_ request: NewCustomer, idempotencyKey: String) async throws -> ProviderCustomer {
        var form = FormBody()
        form.add("description", request.description)
        form.addMetadata(["vendor_id": request.vendorId.uuidString.lowercased()])
        let customer: StripeCustomer = try await send(.post("/v1/customers", form, idempotencyKey: idempotencyKey))
        return ProviderCustomer(id: customer.id)
    }

    public func attachPaymentMethod(_ paymentMethod: String, to customer: String, idempotencyKey: String) async throws -> ProviderPaymentMethod {
        var form = FormBody()
        form.add("customer", customer)
        let path = "/v1/payment_methods/\(Self.pathSegment(paymentMethod))/attach"
        let method: StripePaymentMethod = try await send(.post(path, form, idempotencyKey: idempotencyKey))
        // Only cards are saved here; anything else still answers with what it is rather than failing.
        return ProviderPaymentMethod(id: method.id, brand: method.card?.brand ?? method.type ?? "unknown", last4: method.card?.last4 ?? "")
    }

    public func charge(_ request: ChargeRequest, idempotencyKey: String) async throws -> ProviderPaymentIntent {
        var form = FormBody()
        form.add("amount", String(try StripeAmount.stripe(request.amount)))
        form.add("currency", request.amount.currency.code.lowercased())
        form.add("customer", request.customer)
        form.add("payment_method", request.paymentMethod)
        form.add("confirm", "true")
        form.add("off_session", "true")
        // Nobody is there to follow a redirect off session; without this Stripe asks for a return_url.
        form.add("automatic_payment_methods[enabled]", "true")
        form.add("automatic_payment_methods[allow_redirects]", "never")
        form.add("description", request.description)
        form.addMetadata(request.metadata)
        form.add("transfer_group", request.transferGroup)
        form.add("expand[]", Self.expandFee)
        // A decline answers 402 carrying the failed intent: that is the charge's result, not an error.
        let intent: StripePaymentIntent = try await send(.post("/v1/payment_intents", form, idempotencyKey: idempotencyKey)) { error in
            error.paymentIntent.map { StripePaymentIntent(failed: $0, by: error) }
        }
        return try intent.model()
    }

    public func createPaymentIntent(_ request: PaymentIntentRequest, idempotencyKey: String) async throws -> ProviderPaymentIntent {
        var form = FormBody()
        form.add("amount", String(try StripeAmount.stripe(request.amount)))
        form.add("currency", request.amount.currency.code.lowercased())
        // Confirmed by the buyer's client (Stripe.js), which offers the methods enabled for the account.
        form.add("automatic_payment_methods[enabled]", "true")
        form.add("description", request.description)
        form.addMetadata(request.metadata)
        form.add("transfer_group", request.transferGroup)
        let intent: StripePaymentIntent = try await send(.post("/v1/payment_intents", form, idempotencyKey: idempotencyKey))
        return try intent.model()
    }

    public func paymentIntent(_ id: String) async throws -> ProviderPaymentIntent {
        let path = "/v1/payment_intents/\(Self.pathSegment(id))"
        let intent: StripePaymentIntent = try await send(.get(path, query: "expand%5B%5D=" + Self.expandFee))
        return try intent.model()
    }

    public func refund(_ request: RefundRequest, idempotencyKey: String) async throws -> ProviderRefund {
        var form = FormBody()
        form.add("payment_intent", request.paymentIntent)
        if let amount = request.amount { form.add("amount", String(try StripeAmount.stripe(amount))) }
        var metadata = request.metadata
        if let reason = request.reason {
            // Stripe refuses a reason outside its enum; any other reason is kept in the metadata instead of lost.
            if Self.refundReasons.contains(reason) {
                form.add("reason", reason)
            } else if metadata["reason"] == nil {
                metadata["reason"] = reason
            }
        }
        form.addMetadata(metadata)
        let refund: StripeRefund = try await send(.post("/v1/refunds", form, idempotencyKey: idempotencyKey))
        return try refund.model(paymentIntent: request.paymentIntent)
    }

    public func cancelPaymentIntent(_ id: String, idempotencyKey: String) async throws -> ProviderPaymentIntent {
        var form = FormBody()
        form.add("cancellation_reason", "abandoned")
        let intent: StripePaymentIntent = try await send(.post("/v1/payment_intents/\(Self.pathSegment(id))/cancel", form, idempotencyKey: idempotencyKey))
        return try intent.model()
    }

    /// An Express connected account that receives transfers, and the link where the vendor onboards.
    public func createPayoutAccount(_ request: NewPayoutAccount, idempotencyKey: String) async throws -> ProviderPayoutAccount {
        var form = FormBody()
        form.add("type", "express")
        form.add("capabilities[transfers][requested]", "true")
        form.addMetadata(["vendor_id": request.vendorId.lowercased])
        let account: StripeAccount = try await send(.post("/v1/accounts", form, idempotencyKey: idempotencyKey))
        return try await payoutAccount(account, onboarding: request)
    }

    public func payoutAccount(_ id: String, onboarding: NewPayoutAccount) async throws -> ProviderPayoutAccount {
        let account: StripeAccount = try await send(.get("/v1/accounts/\(Self.pathSegment(id))", query: nil))
        return try await payoutAccount(account, onboarding: onboarding)
    }

    /// Active once transfers to it are; until then pending with a new onboarding link (links are
    /// single-use and short-lived, so one is made for each answer).
    private func payoutAccount(_ account: StripeAccount, onboarding: NewPayoutAccount) async throws -> ProviderPayoutAccount {
        guard account.capabilities?.transfers != "active" else { return ProviderPayoutAccount(id: account.id, status: .active, onboardingURL: nil) }
        var form = FormBody()
        form.add("account", account.id)
        form.add("type", "account_onboarding")
        form.add("return_url", onboarding.returnURL)
        form.add("refresh_url", onboarding.refreshURL)
        let link: StripeAccountLink = try await send(.post("/v1/account_links", form, idempotencyKey: "account-link:\(account.id):\(UUID().lowercased)"))
        return ProviderPayoutAccount(id: account.id, status: .pending, onboardingURL: link.url)
    }

    public func dispute(_ id: String) async throws -> ProviderDispute {
        let dispute: StripeDispute = try await send(.get("/v1/disputes/\(Self.pathSegment(id))", query: nil))
        return ProviderDispute(id: dispute.id, paymentIntent: dispute.paymentIntent ?? "", amount: try StripeAmount.money(dispute.amount, dispute.currency),
                               status: dispute.status, reason: dispute.reason)
    }

    public func transfer(_ request: TransferRequest, idempotencyKey: String) async throws -> ProviderTransfer {
        var form = FormBody()
        form.add("amount", String(try StripeAmount.stripe(request.amount)))
        form.add("currency", request.amount.currency.code.lowercased())
        form.add("destination", request.destination)
        form.add("transfer_group", request.transferGroup)
        form.addMetadata(request.metadata)
        let transfer: StripeTransfer = try await send(.post("/v1/transfers", form, idempotencyKey: idempotencyKey))
        return ProviderTransfer(id: transfer.id, amount: try StripeAmount.money(transfer.amount, transfer.currency),
                                destination: transfer.destination ?? request.destination)
    }

    public func verifyWebhook(body: [UInt8], signatureHeader: String?, now: Date) throws -> ProviderEvent {
        try webhookSignature.verify(body: body, header: signatureHeader, now: now)
        // Signed by Stripe but unreadable: not a forgery, so `invalidRequest` rather than `invalidSignature`.
        return try WebhookEnvelope.parse(body)
    }

    // MARK: The wire

    /// The balance transaction carries the fee Stripe kept.
    static let expandFee = "latest_charge.balance_transaction"
    static let refundReasons: Set<String> = ["duplicate", "fraudulent", "requested_by_customer"]
    static let maxAnswerBytes = 1 << 20

    /// A POST cannot be written without its idempotency key.
    enum Call {
        case get(String, query: String?)
        case post(String, FormBody, idempotencyKey: String)
    }

    /// Sends `call` with Stripe's headers, retries it where Stripe says that is safe, and answers the
    /// decoded 2xx body; every failure leaves as a `ProviderError`. `declined` may turn a 402 into an answer.
    private func send<Answer: Decodable>(_ call: Call, declined: (StripeErrorBody.Detail) -> Answer? = { _ in nil }) async throws -> Answer {
        var request: HTTPClientRequest
        switch call {
        case .get(let path, let query):
            request = HTTPClientRequest(url: url(path, query: query))
            request.method = .GET
        case .post(let path, let form, let idempotencyKey):
            request = HTTPClientRequest(url: url(path, query: nil))
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            // The same key on every retry: Stripe answers a repeat with the first result instead of acting twice.
            request.headers.add(name: "Idempotency-Key", value: idempotencyKey)
            request.body = .bytes(ByteBuffer(string: form.encoded))
        }
        request.headers.add(name: "Authorization", value: "Bearer \(secretKey)")
        request.headers.add(name: "Stripe-Version", value: apiVersion)

        var retry = 0
        while true {
            let status: Int
            let shouldRetryHeader: String?
            let body: ByteBuffer
            do {
                let response = try await httpClient.execute(request, timeout: timeout)
                status = Int(response.status.code)
                shouldRetryHeader = response.headers.first(name: "Stripe-Should-Retry")
                body = try await response.body.collect(upTo: Self.maxAnswerBytes)
            } catch {
                try Task.checkCancellation()
                // Refused, reset or timed out: whether Stripe acted is unknown, and the key makes asking again safe.
                guard retry < maxNetworkRetries else { throw ProviderError.unavailable("stripe could not be reached: \(error)") }
                try await backOff(retry)
                retry += 1
                continue
            }

            if (200..<300).contains(status) {
                guard let answer = try? Self.decoder().decode(Answer.self, from: Data(buffer: body)) else {
                    throw ProviderError.unavailable("stripe's answer (\(status)) could not be read")
                }
                return answer
            }
            if Self.shouldRetry(status: status, stripeShouldRetry: shouldRetryHeader), retry < maxNetworkRetries {
                try await backOff(retry)
                retry += 1
                continue
            }
            let detail = (try? Self.decoder().decode(StripeErrorBody.self, from: Data(buffer: body)))?.error
            if status == 402, let detail, let answer = declined(detail) { return answer }
            throw Self.providerError(status: status, detail)
        }
    }

    /// Whether a failed answer may be asked again: Stripe's `Stripe-Should-Retry` decides when it is
    /// present; otherwise a lock timeout (409), rate limiting (429) and server errors are.
    static func shouldRetry(status: Int, stripeShouldRetry: String?) -> Bool {
        // The request itself was refused: asking again gets the same answer.
        if (400...404).contains(status) { return false }
        switch stripeShouldRetry?.lowercased() {
        case "true": return true
        case "false": return false
        default: return status == 409 || status == 429 || status >= 500
        }
    }

    static func providerError(status: Int, _ detail: StripeErrorBody.Detail?) -> ProviderError {
        let message = detail?.message ?? "stripe answered \(status)"
        switch status {
        case 402: return .cardDeclined(code: detail?.declineCode ?? detail?.code ?? "card_declined", message: message)
        case 404: return .notFound(message)
        // Our key or its permissions, not the request: billing tries again once the configuration is fixed.
        case 401, 403: return .unavailable("stripe refused the API key (\(status))")
        case 409, 429, 500...: return .unavailable(message)
        default: return .invalidRequest(message)
        }
    }

    /// Exponential backoff with jitter (half to all of the step), so clients failing together do not retry in step.
    private func backOff(_ retry: Int) async throws {
        let step = retryBaseDelay * (1 << min(retry, 6))
        try await Task.sleep(for: step * Double.random(in: 0.5...1))
    }

    private func url(_ path: String, query: String?) -> String {
        var base = baseURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        return base + path + (query.map { "?" + $0 } ?? "")
    }

    /// An id placed in a path cannot reach another endpoint (`../`, `?`).
    static func pathSegment(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: FormBody.unreserved) ?? ""
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }
}

/// A form body in Stripe's bracket notation (`metadata[invoice_id]=…`), in the order written.
struct FormBody: Sendable {
    private(set) var fields: [(name: String, value: String)] = []

    /// RFC 3986's unreserved characters: everything else is percent-encoded.
    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    /// Brackets stay literal in names, as Stripe's own libraries send them, so bodies read in logs as the docs write them.
    static let nameCharacters = unreserved.union(CharacterSet(charactersIn: "[]"))

    /// Leaves out a nil value, so optional parameters are simply absent.
    mutating func add(_ name: String, _ value: String?) {
        if let value { fields.append((name, value)) }
    }

    /// Sorted by key, so the same metadata always encodes to the same body.
    mutating func addMetadata(_ metadata: [String: String]) {
        for key in metadata.keys.sorted() { add("metadata[\(key)]", metadata[key]) }
    }

    var encoded: String {
        fields.map { field in
            let name = field.name.addingPercentEncoding(withAllowedCharacters: Self.nameCharacters) ?? ""
            let value = field.value.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? ""
            return name + "=" + value
        }.joined(separator: "&")
    }
}

/// Stripe's amounts are in each currency's minor unit, as `Money.amount` is, so zero-decimal
/// currencies (JPY: 500 is ¥500) and three-decimal ones already match. Two currencies are the
/// exception, where Stripe's decimals differ from ISO 4217's.
enum StripeAmount {
    /// Stripe's decimals minus ISO's: ISK has none in ISO but two at Stripe (100 is 1 króna);
    /// MGA has two in ISO but none at Stripe.
    static let decimalShift: [String: Int] = ["ISK": 2, "MGA": -2]

    static func stripe(_ money: Money) throws -> Int64 {
        switch decimalShift[money.currency.code] {
        case 2?:
            let (scaled, overflow) = money.amount.multipliedReportingOverflow(by: 100)
            guard !overflow else { throw ProviderError.invalidRequest("the amount is too large") }
            return scaled
        case (-2)?:
            guard money.amount % 100 == 0 else {
                throw ProviderError.invalidRequest("\(money.currency.code) amounts must be whole units at Stripe")
            }
            return money.amount / 100
        default:
            return money.amount
        }
    }

    static func money(_ amount: Int64, _ stripeCurrency: String) throws -> Money {
        let currency: Currency
        do {
            currency = try Currency(code: stripeCurrency.uppercased())
        } catch {
            throw ProviderError.unavailable("stripe answered in an unknown currency \(stripeCurrency)")
        }
        switch decimalShift[currency.code] {
        case 2?: return Money(amount: amount / 100, currency: currency)
        case (-2)?:
            let (scaled, overflow) = amount.multipliedReportingOverflow(by: 100)
            guard !overflow else { throw ProviderError.unavailable("stripe answered an amount too large") }
            return Money(amount: scaled, currency: currency)
        default: return Money(amount: amount, currency: currency)
        }
    }
}

// MARK: Stripe's objects, as read

/// `{"error": {...}}`, Stripe's answer to any failed request.
struct StripeErrorBody: Decodable {
    struct Detail: Decodable {
        var type: String?
        var code: String?
        var declineCode: String?
        var message: String?
        /// Present when a confirmation failed: the intent as the decline left it.
        var paymentIntent: StripePaymentIntent?
    }

    var error: Detail
}

/// A field Stripe answers as an id, or as the object itself when the request expanded it.
enum StripeExpandable<Object: Decodable>: Decodable {
    case id(String)
    case object(Object)

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let id = try? container.decode(String.self) {
            self = .id(id)
        } else {
            self = .object(try container.decode(Object.self))
        }
    }

    var object: Object? {
        if case .object(let object) = self { object } else { nil }
    }
}

struct StripeCustomer: Decodable {
    var id: String
}

struct StripePaymentMethod: Decodable {
    struct Card: Decodable {
        var brand: String
        var last4: String
    }

    var id: String
    var type: String?
    var card: Card?
}

struct StripePaymentIntent: Decodable {
    struct Failure: Decodable {
        var code: String?
        var declineCode: String?
        var message: String?
    }

    struct Charge: Decodable {
        var balanceTransaction: StripeExpandable<BalanceTransaction>?
    }

    /// In the settlement currency, which need not be the charge's.
    struct BalanceTransaction: Decodable {
        var fee: Int64
        var currency: String
    }

    var id: String
    var status: String
    var amount: Int64
    var currency: String
    var created: Int64
    var metadata: [String: String]?
    var clientSecret: String?
    var lastPaymentError: Failure?
    var latestCharge: StripeExpandable<Charge>?

    /// The intent a 402 carried, with the error's own code (the decline code when there is one).
    init(failed intent: StripePaymentIntent, by error: StripeErrorBody.Detail) {
        self = intent
        lastPaymentError = Failure(code: error.code, declineCode: error.declineCode, message: error.message)
    }

    func model() throws -> ProviderPaymentIntent {
        guard let status = ProviderPaymentIntent.Status(rawValue: self.status) else {
            throw ProviderError.unavailable("stripe answered a payment intent status billing does not know: \(self.status)")
        }
        let amount = try StripeAmount.money(amount, currency)
        let fee = try latestCharge?.object?.balanceTransaction?.object.map { try StripeAmount.money($0.fee, $0.currency) }
        return ProviderPaymentIntent(
            id: id, status: status, amount: amount, fee: fee ?? .zero(amount.currency),
            failureCode: lastPaymentError.flatMap { $0.declineCode ?? $0.code }, failureMessage: lastPaymentError?.message,
            metadata: metadata ?? [:], clientSecret: clientSecret, created: Date(timeIntervalSince1970: TimeInterval(created)))
    }
}

struct StripeRefund: Decodable {
    var id: String
    var amount: Int64
    var currency: String
    var status: String?
    var paymentIntent: String?

    func model(paymentIntent requested: String) throws -> ProviderRefund {
        // Anything not final yet (`requires_action`: waiting on the customer's bank details) is pending for billing.
        let status = self.status.flatMap(ProviderRefund.Status.init(rawValue:)) ?? .pending
        return ProviderRefund(id: id, paymentIntent: paymentIntent ?? requested, amount: try StripeAmount.money(amount, currency), status: status)
    }
}

struct StripeTransfer: Decodable {
    var id: String
    var amount: Int64
    var currency: String
    var destination: String?
}


struct StripeAccount: Decodable {
    struct Capabilities: Decodable {
        var transfers: String?
    }

    var id: String
    var capabilities: Capabilities?
}

struct StripeAccountLink: Decodable {
    var url: String
}

struct StripeDispute: Decodable {
    var id: String
    var amount: Int64
    var currency: String
    var paymentIntent: String?
    var status: String
    var reason: String?
}
