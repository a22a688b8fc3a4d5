import Foundation
import Platform

/// The payment provider as billing sees it: customers, their saved payment methods, payment
/// intents charged off session, refunds and transfers, and the signed webhooks it sends back.
/// Two adapters stand behind it: `SandboxProvider` (dev and tests) and `StripeProvider`.
///
/// Every call that creates something takes an idempotency key: the caller derives it from what
/// it is doing (`invoice:<id>:attempt:<n>`), so a retry after a crash, a timeout or a killed
/// process gets the first answer back instead of charging twice.
public protocol PaymentProvider: Sendable {
    /// `sandbox` or `stripe`: the webhook path (`/v1/webhooks/<name>`) and what billing records.
    var name: String { get }

    /// A customer for a vendor; billing keeps its id.
    func createCustomer(_ request: NewCustomer, idempotencyKey: String) async throws -> ProviderCustomer

    /// Saves a payment method (Stripe's test names: `pm_card_visa`, …) to a customer and answers
    /// the saved one. A card the provider refuses at once throws `ProviderError.cardDeclined`.
    func attachPaymentMethod(_ paymentMethod: String, to customer: String, idempotencyKey: String) async throws -> ProviderPaymentMethod

    /// Creates a payment intent and confirms it off session with the saved method. A decline is
    /// not an error: it is an intent whose status is `requiresPaymentMethod` with a failure code.
    func charge(_ request: ChargeRequest, idempotencyKey: String) async throws -> ProviderPaymentIntent

    /// Several charges, each with its own key; the answers in the order asked, a request the
    /// provider refuses (`ProviderError`) being that request's answer. By default the calls are
    /// made concurrently (Stripe has no batch endpoint); the sandbox writes them as a set.
    func charge(_ requests: [(request: ChargeRequest, idempotencyKey: String)]) async throws -> [Result<ProviderPaymentIntent, ProviderError>]

    /// Creates a payment intent for the buyer's client to confirm (Stripe.js, or the sandbox's
    /// confirm endpoint): `requiresPaymentMethod` with a client secret, nothing charged yet.
    func createPaymentIntent(_ request: PaymentIntentRequest, idempotencyKey: String) async throws -> ProviderPaymentIntent

    /// Cancels an intent nobody has paid, so a buyer cannot pay a dead order. An intent that has
    /// succeeded cannot be canceled (`invalidRequest`): its payment is refunded instead.
    func cancelPaymentIntent(_ id: String, idempotencyKey: String) async throws -> ProviderPaymentIntent

    /// The intent as the provider holds it now: webhooks are applied from this, never from the
    /// event's own copy, so an old event arriving late cannot undo a newer state.
    func paymentIntent(_ id: String) async throws -> ProviderPaymentIntent

    /// A dispute (chargeback) as the provider holds it now: webhooks about disputes are applied from this.
    func dispute(_ id: String) async throws -> ProviderDispute

    /// Refunds all of a succeeded intent, or `amount` of it.
    func refund(_ request: RefundRequest, idempotencyKey: String) async throws -> ProviderRefund

    /// Moves money to a connected account (a vendor's payout account).
    func transfer(_ request: TransferRequest, idempotencyKey: String) async throws -> ProviderTransfer

    /// A vendor's payout account (a connected account): active at once in the sandbox; with
    /// Stripe pending, with an onboarding link, until the vendor has finished onboarding.
    func createPayoutAccount(_ request: NewPayoutAccount, idempotencyKey: String) async throws -> ProviderPayoutAccount

    /// The account as the provider holds it now (a fresh onboarding link while it is pending).
    func payoutAccount(_ id: String, onboarding: NewPayoutAccount) async throws -> ProviderPayoutAccount

    /// Checks a webhook's signature header over the raw body (HMAC-SHA256 over `t.body`, 300 s
    /// tolerance on the wall clock, constant-time comparison) and reads the event's envelope.
    func verifyWebhook(body: [UInt8], signatureHeader: String?, now: Date) throws -> ProviderEvent
}

extension PaymentProvider {
    public func charge(_ requests: [(request: ChargeRequest, idempotencyKey: String)]) async throws -> [Result<ProviderPaymentIntent, ProviderError>] {
        try await withThrowingTaskGroup(of: (Int, Result<ProviderPaymentIntent, ProviderError>).self) { group in
            for (index, (request, key)) in requests.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await charge(request, idempotencyKey: key)))
                    } catch let error as ProviderError {
                        return (index, .failure(error))
                    }
                }
            }
            var answers = [Result<ProviderPaymentIntent, ProviderError>](repeating: .failure(.unavailable("no answer")), count: requests.count)
            for try await (index, answer) in group { answers[index] = answer }
            return answers
        }
    }
}

public struct NewCustomer: Sendable, Equatable {
    /// The vendor's user id, kept in the customer's metadata.
    public var vendorId: UUID
    public var description: String

    public init(vendorId: UUID, description: String) {
        self.vendorId = vendorId
        self.description = description
    }
}

public struct ProviderCustomer: Sendable, Equatable {
    public var id: String

    public init(id: String) { self.id = id }
}

public struct ProviderPaymentMethod: Sendable, Equatable, Codable {
    /// The saved method's own id (`pm_…`), not the test name it was made from.
    public var id: String
    public var brand: String
    public var last4: String

    public init(id: String, brand: String, last4: String) {
        self.id = id
        self.brand = brand
        self.last4 = last4
    }
}

public struct ChargeRequest: Sendable, Equatable {
    public var amount: Money
    public var customer: String
    public var paymentMethod: String
    public var description: String
    /// Copied onto the intent (`invoice_id`, `attempt`, `order_id`): a webhook for the intent
    /// finds its way back to what it pays for even before billing has recorded the intent.
    public var metadata: [String: String]
    /// Stripe's `transfer_group` (the order id for marketplace payments); nil for subscriptions.
    public var transferGroup: String?

    public init(amount: Money, customer: String, paymentMethod: String, description: String,
                metadata: [String: String], transferGroup: String? = nil) {
        self.amount = amount
        self.customer = customer
        self.paymentMethod = paymentMethod
        self.description = description
        self.metadata = metadata
        self.transferGroup = transferGroup
    }
}

/// A payment the buyer confirms on their side (an order's): no customer or saved method needed.
public struct PaymentIntentRequest: Sendable, Equatable {
    public var amount: Money
    public var description: String
    /// Copied onto the intent (`order_id`): its webhooks find their way back to the order.
    public var metadata: [String: String]
    /// Stripe's `transfer_group` ("separate charges and transfers"): the order id.
    public var transferGroup: String?

    public init(amount: Money, description: String, metadata: [String: String], transferGroup: String? = nil) {
        self.amount = amount
        self.description = description
        self.metadata = metadata
        self.transferGroup = transferGroup
    }
}

public struct ProviderPaymentIntent: Sendable, Equatable {
    /// Stripe's statuses; billing cares whether one is final.
    public enum Status: String, Sendable, Codable {
        case requiresPaymentMethod = "requires_payment_method"
        case requiresConfirmation = "requires_confirmation"
        case requiresAction = "requires_action"
        case processing
        case succeeded
        case canceled

        /// After a failed attempt Stripe puts the intent back to `requires_payment_method`
        /// with `last_payment_error`; billing treats that as this attempt's final failure.
        public var isFinal: Bool { self == .succeeded || self == .canceled || self == .requiresPaymentMethod }
    }

    public var id: String
    public var status: Status
    public var amount: Money
    /// The fee the provider keeps (known once succeeded; zero before).
    public var fee: Money
    /// `card_declined`, `insufficient_funds`, … when the last attempt failed.
    public var failureCode: String?
    public var failureMessage: String?
    public var metadata: [String: String]
    /// For a client that confirms itself (Stripe.js; the sandbox's confirm endpoint).
    public var clientSecret: String?
    public var created: Date

    public init(id: String, status: Status, amount: Money, fee: Money, failureCode: String? = nil, failureMessage: String? = nil,
                metadata: [String: String] = [:], clientSecret: String? = nil, created: Date) {
        self.id = id
        self.status = status
        self.amount = amount
        self.fee = fee
        self.failureCode = failureCode
        self.failureMessage = failureMessage
        self.metadata = metadata
        self.clientSecret = clientSecret
        self.created = created
    }
}

public struct RefundRequest: Sendable, Equatable {
    public var paymentIntent: String
    /// Nil refunds what remains of the intent.
    public var amount: Money?
    public var reason: String?
    public var metadata: [String: String]

    public init(paymentIntent: String, amount: Money?, reason: String?, metadata: [String: String] = [:]) {
        self.paymentIntent = paymentIntent
        self.amount = amount
        self.reason = reason
        self.metadata = metadata
    }
}

public struct ProviderRefund: Sendable, Equatable {
    public enum Status: String, Sendable, Codable { case pending, succeeded, failed, canceled }

    public var id: String
    public var paymentIntent: String
    public var amount: Money
    public var status: Status

    public init(id: String, paymentIntent: String, amount: Money, status: Status) {
        self.id = id
        self.paymentIntent = paymentIntent
        self.amount = amount
        self.status = status
    }
}

public struct TransferRequest: Sendable, Equatable {
    public var amount: Money
    /// The connected account (`acct_…`).
    public var destination: String
    public var transferGroup: String?
    public var metadata: [String: String]

    public init(amount: Money, destination: String, transferGroup: String?, metadata: [String: String] = [:]) {
        self.amount = amount
        self.destination = destination
        self.transferGroup = transferGroup
        self.metadata = metadata
    }
}

public struct ProviderTransfer: Sendable, Equatable {
    public var id: String
    public var amount: Money
    public var destination: String

    public init(id: String, amount: Money, destination: String) {
        self.id = id
        self.amount = amount
        self.destination = destination
    }
}

public struct NewPayoutAccount: Sendable, Equatable {
    public var vendorId: UUID
    /// Where the provider's onboarding sends the vendor when done, and when its link has expired.
    public var returnURL: String
    public var refreshURL: String

    public init(vendorId: UUID, returnURL: String, refreshURL: String) {
        self.vendorId = vendorId
        self.returnURL = returnURL
        self.refreshURL = refreshURL
    }
}

public struct ProviderPayoutAccount: Sendable, Equatable {
    public enum Status: String, Sendable, Codable { case pending, active }

    /// `acct_…`
    public var id: String
    public var status: Status
    /// While pending: where the vendor completes onboarding (expires; read the account again for a new one).
    public var onboardingURL: String?

    public init(id: String, status: Status, onboardingURL: String?) {
        self.id = id
        self.status = status
        self.onboardingURL = onboardingURL
    }
}

/// A buyer's bank disputing a payment (Stripe's `dispute`): the provider withholds `amount` until
/// the bank decides.
public struct ProviderDispute: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable { case open, won, lost }

    /// `dp_…`
    public var id: String
    public var paymentIntent: String
    public var amount: Money
    /// Stripe's: `warning_needs_response`, `warning_under_review`, `warning_closed`,
    /// `needs_response`, `under_review`, `won`, `lost`.
    public var status: String
    public var reason: String?

    public init(id: String, paymentIntent: String, amount: Money, status: String, reason: String?) {
        self.id = id
        self.paymentIntent = paymentIntent
        self.amount = amount
        self.status = status
        self.reason = reason
    }

    /// An inquiry closed without a chargeback (`warning_closed`) took nothing: as good as won.
    public var outcome: Outcome {
        switch status {
        case "won", "warning_closed": .won
        case "lost": .lost
        default: .open
        }
    }
}

/// A verified webhook's envelope: what happened to which object. Billing stores it by `id`
/// and applies it by re-reading the object.
public struct ProviderEvent: Sendable, Equatable {
    public var id: String
    /// `payment_intent.succeeded`, `payment_intent.payment_failed`, `charge.refunded`, …
    public var type: String
    /// `payment_intent`, `refund`, `transfer`, …
    public var objectType: String
    public var objectId: String
    public var created: Date

    public init(id: String, type: String, objectType: String, objectId: String, created: Date) {
        self.id = id
        self.type = type
        self.objectType = objectType
        self.objectId = objectId
        self.created = created
    }
}

/// What a provider call can fail with, as billing needs to tell them apart.
public enum ProviderError: Error, Sendable, Equatable {
    /// The card was refused when it was saved (`card_declined`, `insufficient_funds`, …).
    case cardDeclined(code: String, message: String)
    /// The request itself is wrong (unknown payment method, amount too small): not retried.
    case invalidRequest(String)
    /// Not found at the provider (an unknown intent id).
    case notFound(String)
    /// The provider could not answer now (network, 5xx, rate limited): the caller retries later
    /// with the same idempotency key.
    case unavailable(String)
    /// The webhook's signature is missing, wrong or outside the tolerance.
    case invalidSignature(String)
}
