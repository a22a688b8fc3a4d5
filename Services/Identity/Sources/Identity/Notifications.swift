import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// Mails identity owes its users (verification, reset, password changed): requested from
/// messaging with `notification.requested`, in the transaction of the change that needs them.
enum Notifications {
    static func request(user: UUID, to email: String, template: String, data: [String: String], in transaction: Transaction) async throws {
        let payload = NotificationRequestedV1(notificationId: UUID.v7(), userId: user, to: email, template: template, data: data)
        try await Outbox.emit(NotificationEvents.requested, payload, in: transaction)
    }

    /// Tells messaging where the user's mail goes and whether the address is proven, in the
    /// transaction that registered or verified it.
    static func address(of user: UUID, is email: String, verified: Bool, in transaction: Transaction) async throws {
        let payload = UserEmailChangedV1(userId: user, email: email, verified: verified, changedAt: transaction.now)
        try await Outbox.emit(NotificationEvents.emailChanged, payload, in: transaction)
    }
}
