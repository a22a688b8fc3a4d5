import Platform

/// Every way a billing request can be refused, mapped to its problem in one place.
enum BillingError: Error, ProblemConvertible, Equatable {
    /// No such subscription, or not the caller's (never 403: nothing leaks).
    case subscriptionNotFound
    case invoiceNotFound
    case noSubscription
    case subscriptionExists
    case notYourSubscription
    case adminOnly
    case cardDeclined(code: String, message: String)
    case unknownPaymentMethod(String)
    case providerUnavailable
    case webhookProviderUnknown
    case invalidSignature(String)
    /// No payment intent with this id that the caller may confirm (or not the sandbox).
    case paymentNotFound
    case paymentNotConfirmable(String)
    case orderPaymentNotFound
    case payoutAccountNotFound

    var problem: Problem {
        switch self {
        case .subscriptionNotFound:
            Problem(.notFound, "No subscription with this id.")
        case .invoiceNotFound:
            Problem(.notFound, "No invoice with this id.")
        case .noSubscription:
            Problem(.notFound, "You have no subscription yet; choose a plan and subscribe.")
        case .subscriptionExists:
            Problem(.conflict, "You already have a subscription that is not over; change its plan instead.",
                    typeSlug: "subscription-exists")
        case .notYourSubscription:
            Problem(.forbidden, "Only the vendor who owns this subscription may do this.")
        case .adminOnly:
            Problem(.forbidden, "Only administrators may do this.")
        case .cardDeclined(let code, let message):
            Problem(.paymentRequired, "The card was declined (\(code)): \(message) Try another payment method.", typeSlug: "card-declined")
        case .unknownPaymentMethod(let detail):
            Problem.validation([FieldError("paymentMethod", "is not a payment method the provider knows (\(detail))")])
        case .providerUnavailable:
            Problem(.serviceUnavailable, "The payment provider did not answer; try again shortly.", headers: [.retryAfter: "5"])
        case .webhookProviderUnknown:
            Problem(.notFound, "No webhook endpoint for this provider.")
        case .paymentNotFound:
            Problem(.notFound, "No payment with this id.")
        case .paymentNotConfirmable(let detail):
            Problem(.conflict, "This payment cannot be confirmed: \(detail).", typeSlug: "invalid-transition")
        case .orderPaymentNotFound:
            Problem(.notFound, "No payment for this order.")
        case .payoutAccountNotFound:
            Problem(.notFound, "You have no payout account yet; create one with POST /v1/vendor/payout-account.")
        case .invalidSignature(let detail):
            Problem(.malformedRequest, "The webhook signature is invalid: \(detail).", typeSlug: "invalid-signature")
        }
    }
}
