import Platform

/// Every way a listings request can be refused, mapped to its problem in one place.
enum ListingsError: Error, ProblemConvertible, Equatable {
    /// The listing does not exist, or the caller may not see it (never 403: nothing leaks).
    case listingNotFound
    case notYourListing
    case staffOnly
    case emailNotVerified
    case subscriptionRequired
    case quotaExceeded(quota: Int)
    case categoryNotFound

    var problem: Problem {
        switch self {
        case .listingNotFound:
            Problem(.notFound, "No listing with this id.")
        case .notYourListing:
            Problem(.forbidden, "Only the vendor who owns this listing may do this.")
        case .staffOnly:
            Problem(.forbidden, "Only moderators and administrators may do this.")
        case .emailNotVerified:
            Problem(.forbidden, "Verify your email address before publishing.", typeSlug: "email-not-verified")
        case .subscriptionRequired:
            Problem(.forbidden, "Your subscription does not allow publishing listings; subscribe to a plan first.",
                    typeSlug: "subscription-required")
        case .quotaExceeded(let quota):
            Problem(.conflict, "Your plan allows \(quota) published or pending listings; close one or upgrade your plan.",
                    typeSlug: "listing-quota-exceeded")
        case .categoryNotFound:
            Problem(.notFound, "No category with this slug.")
        }
    }
}
