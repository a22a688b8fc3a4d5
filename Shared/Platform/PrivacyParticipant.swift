import Contracts
import Foundation
import Logging
import PostgresNIO

/// A service's part in identity's privacy processes. On `user.export_requested` it answers with
/// what it holds about the user; on `user.erasure_requested` it anonymises that and acknowledges.
/// Both answers go through the outbox to `<service>.privacy.v1` in the same transaction as the
/// inbox row, so a redelivered request is answered once.
public struct PrivacyParticipant: Sendable {
    /// The service's data about a user as one JSON object (text), built by Postgres. Lists must be bounded.
    public typealias Export = @Sendable (UUID, Transaction) async throws -> String
    /// Anonymises the service's data about a user (keeping what it must, redacted).
    public typealias Erase = @Sendable (UUID, Transaction) async throws -> Void

    public static func register(service: String, export: @escaping Export, erase: @escaping Erase, into handlers: inout EventHandlers) {
        handlers.on(UserEvents.exportRequested) { request, _, transaction in
            let data = try await export(request.userId, transaction)
            let part = UserExportPartV1(exportId: request.exportId, userId: request.userId, service: service, data: data)
            try await Outbox.emit(PrivacyEvents.exportPart(service), part, in: transaction)
            transaction.logger.info("export part sent", metadata: ["user.id": "\(request.userId)", "export.id": "\(request.exportId)"])
        }
        handlers.on(UserEvents.erasureRequested) { request, _, transaction in
            try await erase(request.userId, transaction)
            try await PersonalData.forget(request.userId, in: transaction)
            let done = UserErasureCompletedV1(userId: request.userId, service: service, completedAt: transaction.now)
            try await Outbox.emit(PrivacyEvents.erasureCompleted(service), done, in: transaction)
            transaction.logger.info("user data anonymised", metadata: ["user.id": "\(request.userId)"])
        }
    }
}

/// What keeps a user from erasure, stated to identity as it opens and closes (its
/// `user_obligations`): a service calls these in the transaction of the change, so the statement
/// leaves exactly when the change commits.
public enum Obligations {
    public static func open(_ kind: String, reference: UUID, for users: [UUID], service: String, in transaction: Transaction) async throws {
        for user in Set(users) {
            try await Outbox.emit(PrivacyEvents.obligationOpened(service), UserObligationV1(
                userId: user, service: service, kind: kind, reference: reference, at: transaction.now), in: transaction)
        }
    }

    public static func close(_ kind: String, reference: UUID, for users: [UUID], service: String, in transaction: Transaction) async throws {
        for user in Set(users) {
            try await Outbox.emit(PrivacyEvents.obligationClosed(service), UserObligationV1(
                userId: user, service: service, kind: kind, reference: reference, at: transaction.now), in: transaction)
        }
    }
}

/// What the platform's own tables keep of a user, forgotten at erasure: the events already sent
/// that are keyed by them (their registration, their mails' requests, their export parts — the
/// broker's copies age out with the topics' retention) and the answers kept for their
/// idempotency keys. Events not yet sent stay to be sent; the outbox has no index on `key` (the
/// hot path does not pay for a rare erasure): this reads the week of sent rows housekeeping keeps.
public enum PersonalData {
    public static func forget(_ user: UUID, in transaction: Transaction) async throws {
        try await transaction.query("DELETE FROM outbox WHERE key = \(user.uuidString.lowercased()) AND sent_at IS NOT NULL")
        try await transaction.query("DELETE FROM idempotency_keys WHERE caller = \(user)")
    }
}
