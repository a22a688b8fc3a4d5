import Foundation

/// What every event contract says, whatever its payload: for catalogues and fixture checks.
public protocol AnyEventContract: Sendable {
    /// CloudEvents `type`, `marketplace.<service>.<aggregate>.<event>.v<major>`.
    var type: String { get }
    /// The topic it travels on, keyed by aggregate id.
    var topic: String { get }
    /// The aggregate it belongs to, as written in `ce_subject` (`<aggregate>/<id>`).
    var aggregate: String { get }
    var payloadType: any (Codable & Sendable).Type { get }
}

/// An event's contract: its type name, its topic and its payload type, tied together so an event
/// can only be emitted on its own topic with its own payload, and a handler receives that payload
/// already decoded. The aggregate id is the Kafka key (so one aggregate's events stay in order)
/// and names the subject.
public struct EventContract<Payload: Codable & Sendable>: AnyEventContract {
    public let type: String
    public let topic: String
    public let aggregate: String
    /// The id of the aggregate the payload is about.
    public let aggregateId: @Sendable (Payload) -> UUID

    public init(_ type: String, topic: String, aggregate: String, id aggregateId: @escaping @Sendable (Payload) -> UUID) {
        self.type = type
        self.topic = topic
        self.aggregate = aggregate
        self.aggregateId = aggregateId
    }

    public var payloadType: any (Codable & Sendable).Type { Payload.self }

    /// The Kafka key: the aggregate id, lower-case.
    public func key(for payload: Payload) -> String { aggregateId(payload).uuidString.lowercased() }

    /// `ce_subject`: `<aggregate>/<id>`.
    public func subject(for payload: Payload) -> String { "\(aggregate)/\(key(for: payload))" }
}

/// Identity's account events on `identity.users.v1` (key: user id).
public enum UserEvents {
    public static let registered = EventContract<UserRegisteredV1>(EventTypes.userRegistered, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
    public static let roleChanged = EventContract<UserRoleChangedV1>(EventTypes.userRoleChanged, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
    public static let suspended = EventContract<UserStatusChangedV1>(EventTypes.userSuspended, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
    public static let reinstated = EventContract<UserStatusChangedV1>(EventTypes.userReinstated, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
    public static let exportRequested = EventContract<UserExportRequestedV1>(EventTypes.userExportRequested, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
    public static let erasureRequested = EventContract<UserErasureV1>(EventTypes.userErasureRequested, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
    public static let erased = EventContract<UserErasureV1>(EventTypes.userErased, topic: Topics.identityUsers, aggregate: "users") { $0.userId }
}

/// Identity's session revocations on `identity.sessions.v1` (key: user id), read by the gateway.
public enum SessionEvents {
    public static let revoked = EventContract<SessionsRevokedV1>(EventTypes.sessionsRevoked, topic: Topics.identitySessions, aggregate: "users") { $0.userId }
}

/// Messages for users that messaging delivers, on `identity.notifications.v1` (key: user id).
public enum NotificationEvents {
    public static let requested = EventContract<NotificationRequestedV1>(EventTypes.notificationRequested, topic: Topics.identityNotifications, aggregate: "users") { $0.userId }
    /// Where a user's mail goes. On this topic, not `identity.users.v1`, so that addresses reach
    /// only the service that sends mail.
    public static let emailChanged = EventContract<UserEmailChangedV1>(EventTypes.userEmailChanged, topic: Topics.identityNotifications, aggregate: "users") { $0.userId }
}

/// Each privacy participant's answers to identity, on `<service>.privacy.v1` (key: user id).
public enum PrivacyEvents {
    public static func exportPart(_ service: String) -> EventContract<UserExportPartV1> {
        EventContract(EventTypes.userExportPart(service), topic: Topics.privacy(service), aggregate: "users") { $0.userId }
    }

    public static func erasureCompleted(_ service: String) -> EventContract<UserErasureCompletedV1> {
        EventContract(EventTypes.userErasureCompleted(service), topic: Topics.privacy(service), aggregate: "users") { $0.userId }
    }

    public static func obligationOpened(_ service: String) -> EventContract<UserObligationV1> {
        EventContract(EventTypes.userObligationOpened(service), topic: Topics.privacy(service), aggregate: "users") { $0.userId }
    }

    public static func obligationClosed(_ service: String) -> EventContract<UserObligationV1> {
        EventContract(EventTypes.userObligationClosed(service), topic: Topics.privacy(service), aggregate: "users") { $0.userId }
    }

    /// The services whose records can keep a user from erasure.
    public static let obligationHolders = ["billing", "orders"]
}

/// Every event contract of the suite. Each has a fixture of its wire form in `Tests/Fixtures/events`.
public enum EventCatalog {
    public static let all: [any AnyEventContract] = [
        UserEvents.registered, UserEvents.roleChanged, UserEvents.suspended, UserEvents.reinstated,
        UserEvents.exportRequested, UserEvents.erasureRequested, UserEvents.erased,
        SessionEvents.revoked, NotificationEvents.requested, NotificationEvents.emailChanged,
        BillingEvents.entitlementChanged, BillingEvents.trialEnding, BillingEvents.paymentFailed,
        BillingEvents.suspended, BillingEvents.reactivated, BillingEvents.canceled,
        OrderEvents.placed, OrderEvents.paid, OrderEvents.canceled, OrderEvents.shipped, OrderEvents.delivered,
        OrderEvents.received, OrderEvents.completed,
        DisputeEvents.opened, DisputeEvents.withdrawn, DisputeEvents.escalated, DisputeEvents.resolved,
        ReviewEvents.published, ReviewEvents.ratingChanged,
        PaymentEvents.intentCreated, PaymentEvents.succeeded, PaymentEvents.refunded,
        PaymentEvents.chargebackOpened, PaymentEvents.chargebackClosed,
        StockEvents.reserved, StockEvents.rejected, StockEvents.released,
        ListingEvents.published, ListingEvents.updated, ListingEvents.withdrawn, ListingEvents.sold,
        ListingEvents.removed, ListingEvents.moderated,
    ] + Topics.privacyParticipants.flatMap { service -> [any AnyEventContract] in
        [PrivacyEvents.exportPart(service), PrivacyEvents.erasureCompleted(service)]
    } + PrivacyEvents.obligationHolders.flatMap { service -> [any AnyEventContract] in
        [PrivacyEvents.obligationOpened(service), PrivacyEvents.obligationClosed(service)]
    }
}
