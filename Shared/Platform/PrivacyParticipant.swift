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
            let done = UserErasureCompletedV1(userId: request.userId, service: service, completedAt: transaction.now)
            try await Outbox.emit(PrivacyEvents.erasureCompleted(service), done, in: transaction)
            transaction.logger.info("user data anonymised", metadata: ["user.id": "\(request.userId)"])
        }
    }
}
