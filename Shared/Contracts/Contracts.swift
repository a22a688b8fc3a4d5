import Foundation

/// Kafka topics of the suite: `<producing service>.<aggregate>.v<major>`, keyed by aggregate id.
public enum Topics {
    public static let identityUsers = "identity.users.v1"

    /// Every topic the dev broker pre-creates (dead-letter topics included).
    public static let all = [identityUsers] + ["listings", "billing", "orders", "messaging"].map { "\($0).dlq.v1" }
}

/// CloudEvents `type` values: `marketplace.<service>.<aggregate>.<event>.v<major>`.
public enum EventTypes {
    public static let userRegistered = "marketplace.identity.user.registered.v1"
}

/// CloudEvents `source` of each producing service.
public enum EventSources {
    public static let identity = "/marketplace/identity"
}

/// `marketplace.identity.user.registered.v1` on `identity.users.v1`: a new account exists.
/// Carries what other services project about users; no credentials, no email.
public struct UserRegisteredV1: Codable, Sendable, Equatable {
    public var userId: UUID
    public var displayName: String
    public var roles: [String]
    public var status: String
    public var registeredAt: Date

    public init(userId: UUID, displayName: String, roles: [String], status: String, registeredAt: Date) {
        self.userId = userId
        self.displayName = displayName
        self.roles = roles
        self.status = status
        self.registeredAt = registeredAt
    }
}
