import Foundation

/// Kafka topics of the suite: `<producing service>.<aggregate>.v<major>`, keyed by aggregate id.
public enum Topics {
    /// Account lifecycle every service projects: registered, role changed, suspended, reinstated, erasure.
    public static let identityUsers = "identity.users.v1"
    /// Session revocations with a not-before time, keyed by user id. Short retention is enough
    /// (an access token lives 15 minutes): the gateway reads it from the start on boot.
    public static let identitySessions = "identity.sessions.v1"
    /// Messages for users (email verification, password reset) that messaging delivers, keyed by user id.
    public static let identityNotifications = "identity.notifications.v1"

    /// The services that hold personal data besides identity: each answers identity's export and
    /// erasure requests on its own `<service>.privacy.v1` topic.
    public static let privacyParticipants = ["listings", "billing", "orders", "messaging"]

    /// `<service>.privacy.v1`: a service's export parts and erasure acknowledgements, keyed by user id.
    public static func privacy(_ service: String) -> String { "\(service).privacy.v1" }

    /// Billing's entitlement per vendor (may publish, may list, quota), keyed by vendor id.
    public static let billingEntitlements = "billing.entitlements.v1"
    /// What happens to a vendor's subscription that the vendor is told about (trial ending,
    /// payment failed, suspended, reactivated, canceled), keyed by subscription id.
    public static let billingSubscriptions = "billing.subscriptions.v1"
    /// Billing's word on orders' payments (intent created, succeeded, refunded), keyed by order id.
    public static let billingPayments = "billing.payments.v1"
    /// The order lifecycle (placed, paid, canceled, …), keyed by order id.
    public static let ordersOrders = "orders.orders.v1"
    /// A listing's public life (published, updated, withdrawn, sold, removed, moderated), keyed by listing id.
    public static let listingsListings = "listings.listings.v1"
    /// Listings' answers about stock for orders (reserved, rejected, released), keyed by order id.
    public static let listingsStock = "listings.stock.v1"

    /// Every topic the dev broker pre-creates (dead-letter topics included).
    public static let all = [identityUsers, identitySessions, identityNotifications,
                             billingEntitlements, billingSubscriptions, billingPayments, ordersOrders, listingsListings, listingsStock]
        + privacyParticipants.map(privacy)
        + ["identity", "listings", "billing", "orders", "messaging"].map { "\($0).dlq.v1" }
}

/// CloudEvents `type` values: `marketplace.<service>.<aggregate>.<event>.v<major>`.
public enum EventTypes {
    public static let userRegistered = "marketplace.identity.user.registered.v1"
    public static let userRoleChanged = "marketplace.identity.user.role_changed.v1"
    public static let userSuspended = "marketplace.identity.user.suspended.v1"
    public static let userReinstated = "marketplace.identity.user.reinstated.v1"
    public static let userErasureRequested = "marketplace.identity.user.erasure_requested.v1"
    public static let userErased = "marketplace.identity.user.erased.v1"
    public static let sessionsRevoked = "marketplace.identity.user.sessions_revoked.v1"
    public static let notificationRequested = "marketplace.identity.notification.requested.v1"
    public static let userEmailChanged = "marketplace.identity.user.email_changed.v1"
    public static let userExportRequested = "marketplace.identity.user.export_requested.v1"
    public static let entitlementChanged = "marketplace.billing.entitlement.changed.v1"
    public static let subscriptionTrialEnding = "marketplace.billing.subscription.trial_ending.v1"
    public static let subscriptionPaymentFailed = "marketplace.billing.subscription.payment_failed.v1"
    public static let subscriptionSuspended = "marketplace.billing.subscription.suspended.v1"
    public static let subscriptionReactivated = "marketplace.billing.subscription.reactivated.v1"
    public static let subscriptionCanceled = "marketplace.billing.subscription.canceled.v1"
    public static let orderPlaced = "marketplace.orders.order.placed.v1"
    public static let orderPaid = "marketplace.orders.order.paid.v1"
    public static let orderCanceled = "marketplace.orders.order.canceled.v1"
    public static let orderShipped = "marketplace.orders.order.shipped.v1"
    public static let orderDelivered = "marketplace.orders.order.delivered.v1"
    public static let orderReceived = "marketplace.orders.order.received.v1"
    public static let orderCompleted = "marketplace.orders.order.completed.v1"
    public static let disputeOpened = "marketplace.orders.dispute.opened.v1"
    public static let disputeWithdrawn = "marketplace.orders.dispute.withdrawn.v1"
    public static let disputeEscalated = "marketplace.orders.dispute.escalated.v1"
    public static let disputeResolved = "marketplace.orders.dispute.resolved.v1"
    public static let reviewPublished = "marketplace.orders.review.published.v1"
    public static let vendorRatingChanged = "marketplace.orders.vendor.rating_changed.v1"
    public static let paymentIntentCreated = "marketplace.billing.payment.intent_created.v1"
    public static let paymentSucceeded = "marketplace.billing.payment.succeeded.v1"
    public static let paymentRefunded = "marketplace.billing.payment.refunded.v1"
    public static let chargebackOpened = "marketplace.billing.payment.chargeback_opened.v1"
    public static let chargebackClosed = "marketplace.billing.payment.chargeback_closed.v1"
    public static let stockReserved = "marketplace.listings.stock.reserved.v1"
    public static let stockRejected = "marketplace.listings.stock.rejected.v1"
    public static let stockReleased = "marketplace.listings.stock.released.v1"
    public static let listingPublished = "marketplace.listings.listing.published.v1"
    public static let listingUpdated = "marketplace.listings.listing.updated.v1"
    public static let listingWithdrawn = "marketplace.listings.listing.withdrawn.v1"
    public static let listingSold = "marketplace.listings.listing.sold.v1"
    public static let listingRemoved = "marketplace.listings.listing.removed.v1"
    public static let listingModerated = "marketplace.listings.listing.moderated.v1"

    /// `marketplace.<service>.user.export_part.v1`: a service's part of a user's data export.
    public static func userExportPart(_ service: String) -> String { "marketplace.\(service).user.export_part.v1" }
    /// `marketplace.<service>.user.erasure_completed.v1`: a service has anonymised a user's data.
    public static func userErasureCompleted(_ service: String) -> String { "marketplace.\(service).user.erasure_completed.v1" }
    /// `marketplace.<service>.user.obligation_opened.v1` / `…obligation_closed.v1`: what keeps a user from erasure.
    public static func userObligationOpened(_ service: String) -> String { "marketplace.\(service).user.obligation_opened.v1" }
    public static func userObligationClosed(_ service: String) -> String { "marketplace.\(service).user.obligation_closed.v1" }
}

/// CloudEvents `source` of each producing service.
public enum EventSources {
    public static let identity = "/marketplace/identity"
}

/// `marketplace.identity.user.registered.v1` on `identity.users.v1`: a new account exists.
/// Carries what other services project about users; no credentials, no email. `businessName`
/// is a vendor's business as buyers see it (null for buyers, and in events before it was added).
public struct UserRegisteredV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var displayName: String
    public var roles: [String]
    public var status: String
    public var registeredAt: Date
    public var businessName: String?

    public init(userId: UUID, displayName: String, roles: [String], status: String, registeredAt: Date, businessName: String? = nil) {
        self.userId = userId
        self.displayName = displayName
        self.roles = roles
        self.status = status
        self.registeredAt = registeredAt
        self.businessName = businessName
    }
}

/// `marketplace.identity.user.role_changed.v1` on `identity.users.v1`: the account's complete role set now.
public struct UserRoleChangedV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var roles: [String]
    public var changedAt: Date

    public init(userId: UUID, roles: [String], changedAt: Date) {
        self.userId = userId
        self.roles = roles
        self.changedAt = changedAt
    }
}

/// `user.suspended` / `user.reinstated` on `identity.users.v1`: the account's status changed
/// (`suspended` or `active`). The administrator's reason stays in identity's audit log.
public struct UserStatusChangedV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var status: String
    public var changedAt: Date

    public init(userId: UUID, status: String, changedAt: Date) {
        self.userId = userId
        self.status = status
        self.changedAt = changedAt
    }
}

/// `user.erasure_requested` / `user.erased` on `identity.users.v1`. On the request every service
/// anonymises its personal data about the user; `user.erased` says identity has done so too.
public struct UserErasureV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var at: Date

    public init(userId: UUID, at: Date) {
        self.userId = userId
        self.at = at
    }
}

/// `marketplace.identity.user.export_requested.v1` on `identity.users.v1`: every privacy
/// participant answers with its part (`UserExportPartV1`) on its privacy topic.
public struct UserExportRequestedV1: Codable, Sendable, Equatable {
    public var exportId: UUID
    public var userId: UUID
    public var requestedAt: Date

    public init(exportId: UUID, userId: UUID, requestedAt: Date) {
        self.exportId = exportId
        self.userId = userId
        self.requestedAt = requestedAt
    }
}

/// `marketplace.<service>.user.export_part.v1` on `<service>.privacy.v1`: what `service` holds
/// about the user, as JSON text (an object), bounded by the service (lists carry their newest items).
public struct UserExportPartV1: Codable, Sendable, Equatable {
    public var exportId: UUID
    public var userId: UUID
    public var service: String
    public var data: String

    public init(exportId: UUID, userId: UUID, service: String, data: String) {
        self.exportId = exportId
        self.userId = userId
        self.service = service
        self.data = data
    }
}

/// `marketplace.<service>.user.erasure_completed.v1` on `<service>.privacy.v1`: `service`
/// has anonymised what it held about the user.
public struct UserErasureCompletedV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var service: String
    public var completedAt: Date

    public init(userId: UUID, service: String, completedAt: Date) {
        self.userId = userId
        self.service = service
        self.completedAt = completedAt
    }
}

/// `marketplace.<service>.user.obligation_opened.v1` and `…obligation_closed.v1` on
/// `<service>.privacy.v1`: something the user is party to that must run its course before the
/// account may be erased — `kind` `order` (placed, until received, canceled or refunded),
/// `dispute` (until withdrawn or resolved), `subscription` (until it ends), `invoice` (an unpaid
/// one, until paid or closed) — identified by `reference` (the order's, dispute's, subscription's
/// or invoice's id). Identity keeps them in `user_obligations`; both are idempotent.
public struct UserObligationV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var service: String
    public var kind: String
    public var reference: UUID
    public var at: Date

    public init(userId: UUID, service: String, kind: String, reference: UUID, at: Date) {
        self.userId = userId
        self.service = service
        self.kind = kind
        self.reference = reference
        self.at = at
    }
}

/// `marketplace.identity.user.sessions_revoked.v1` on `identity.sessions.v1`: access tokens of
/// `userId` must be refused before they expire — every token of a session in `sessionIds`, and
/// every token issued (`iat`) before `notBefore` unless it belongs to `keptSessionId` (the session
/// that changed its own password stays signed in). `reason`: `logout-all`, `password-change`,
/// `password-reset`, `suspended`, `role-changed`, `erased`. With `scope: sessions` (one signed-out
/// device: `logout`, `revoked-by-user`, `refresh-token-reuse`) only the listed sessions are refused
/// and `notBefore` is just the time of the revocation.
public struct SessionsRevokedV1: Codable, Sendable, Equatable {
    /// What the revocation covers; absent means `user`.
    public enum Scope: String, Codable, Sendable {
        /// Every token of the user issued before `notBefore` (but `keptSessionId`'s), and the listed sessions.
        case user
        /// The listed sessions only.
        case sessions
    }

    public var userId: UUID
    public var sessionIds: [UUID]
    public var notBefore: Date
    public var keptSessionId: UUID?
    public var reason: String
    public var scope: Scope?

    public init(userId: UUID, sessionIds: [UUID], notBefore: Date, keptSessionId: UUID?, reason: String, scope: Scope? = nil) {
        self.userId = userId
        self.sessionIds = sessionIds
        self.notBefore = notBefore
        self.keptSessionId = keptSessionId
        self.reason = reason
        self.scope = scope
    }
}

/// `marketplace.identity.notification.requested.v1` on `identity.notifications.v1`: a message
/// for a user that messaging delivers. `template` names the message (`email-verification`,
/// `password-reset`, `password-changed`); `data` fills it in. The event carries a secret link
/// token, so the topic is readable by identity and messaging only.
public struct NotificationRequestedV1: Codable, Sendable, Equatable {
    public var notificationId: UUID
    public var userId: UUID
    public var channel: String
    public var to: String
    public var template: String
    public var data: [String: String]

    public init(notificationId: UUID, userId: UUID, channel: String = "email", to: String, template: String, data: [String: String]) {
        self.notificationId = notificationId
        self.userId = userId
        self.channel = channel
        self.to = to
        self.template = template
        self.data = data
    }
}

/// `marketplace.identity.user.email_changed.v1` on `identity.notifications.v1`: a user's address
/// and whether they proved it is theirs, sent when they register and when they verify it.
/// Messaging mails only verified addresses (security mails go to the address identity names).
public struct UserEmailChangedV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var email: String
    public var verified: Bool
    public var changedAt: Date

    public init(userId: UUID, email: String, verified: Bool, changedAt: Date) {
        self.userId = userId
        self.email = email
        self.verified = verified
        self.changedAt = changedAt
    }
}
