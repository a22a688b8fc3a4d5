import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// `GET /v1/users/me/export`: what identity holds about the caller, as JSON. Secrets (password
/// hash, TOTP key, token hashes) are described, never exported.
public struct IdentityExport: Codable, Sendable {
    public var service = "identity"
    public var exportedAt: Date
    public var account: UserView
    public var passwordChangedAt: Date?
    public var sessions: [ExportedSession]
    public var auditEntries: [AuditEntry]

    public struct ExportedSession: Codable, Sendable {
        public var id: UUID
        public var userAgent: String?
        public var createdAt: Date
        public var lastUsedAt: Date
        public var revokedAt: Date?
        public var signInMethods: [String]
    }
}

enum Privacy {
    /// The most sessions and audit entries one export lists, newest first (bounded memory).
    static let exportLimit = 500

    static func export(user: UUID, client: PostgresClient, context: OperationContext) async throws -> IdentityExport {
        let logger = context.logger
        let accountRows = try await client.query("""
            SELECT \(unescaped: UserView.columns) FROM users u
            LEFT JOIN vendor_profiles v ON v.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id
            WHERE u.id = \(user) AND u.status <> 'erased'
            """, logger: logger)
        var account: UserView?
        for try await row in accountRows { account = try UserView(row) }
        guard let view = account else { throw IdentityError.userNotFound }
        var passwordChanged: Date?
        for try await changed in try await client.query("SELECT updated_at FROM credentials WHERE user_id = \(user)", logger: logger).decode(Date.self) {
            passwordChanged = changed
        }
        let sessionRows = try await client.query("""
            SELECT id, user_agent, created_at, last_used_at, revoked_at, amr FROM sessions WHERE user_id = \(user)
            ORDER BY created_at DESC LIMIT \(exportLimit)
            """, logger: logger)
        var sessions: [IdentityExport.ExportedSession] = []
        for try await (id, agent, created, used, revoked, amr) in sessionRows.decode((UUID, String?, Date, Date, Date?, [String]).self) {
            sessions.append(.init(id: id, userAgent: agent, createdAt: created, lastUsedAt: used, revokedAt: revoked, signInMethods: amr))
        }
        let about = AuditLog.Filter(actorId: nil, targetId: user, action: nil)
        let audit = try await AuditLog.page(about, try KeysetPageRequest(limit: 100, cursor: nil, order: AuditLog.newestFirst, binding: AuditLog.binding(about)),
                                            client: client, context: context)
        try await AuditLog.record(.exported, actor: user, target: user, client: client, context: context)
        return IdentityExport(exportedAt: Date(), account: view, passwordChangedAt: passwordChanged, sessions: sessions, auditEntries: audit.items)
    }
}

/// A data export job as its owner sees it: identity's part at once, each participant's as it
/// arrives; `parts` once every part is in.
public struct ExportView: Codable, Sendable {
    public var id: UUID
    public var status: String
    public var requestedAt: Date
    public var completedAt: Date?
    public var expiresAt: Date
    public var pendingServices: [String]
    public var parts: [String: JSONValue]?
}

/// Exports across services: identity asks with `user.export_requested`, every participant answers
/// on its privacy topic, the download is assembled here and kept 7 days.
enum Exports {
    static let lifetime: TimeInterval = 7 * 24 * 3600
    static var services: [String] { ["identity"] + Topics.privacyParticipants }

    static func request(user: UUID, client: PostgresClient, context: OperationContext) async throws -> ExportView {
        let identityPart = try await Privacy.export(user: user, client: client, context: context)
        let identityJSON = try JSONWriter.string(identityPart)
        let id = UUID.v7()
        let now = Date()
        let expires = now.addingTimeInterval(lifetime)
        try await Database.transaction(client, context) { transaction in
            try await transaction.query(
                "INSERT INTO exports (id, user_id, requested_at, expires_at) VALUES (\(id), \(user), \(now), \(expires))")
            try await transaction.query(
                "INSERT INTO export_parts (export_id, service, data) VALUES (\(id), 'identity', \(identityJSON)::jsonb)")
            try await Outbox.emit(UserEvents.exportRequested, UserExportRequestedV1(exportId: id, userId: user, requestedAt: now), in: transaction)
        }
        return ExportView(id: id, status: "pending", requestedAt: now, completedAt: nil, expiresAt: expires,
                          pendingServices: Topics.privacyParticipants, parts: nil)
    }

    /// One of the caller's live exports; anyone else's (or an expired one) is not found.
    static func view(_ id: UUID, user: UUID, client: PostgresClient, context: OperationContext) async throws -> ExportView {
        let logger = context.logger
        let rows = try await client.query("""
            SELECT requested_at, completed_at, expires_at FROM exports WHERE id = \(id) AND user_id = \(user) AND expires_at > now()
            """, logger: logger)
        var found: (Date, Date?, Date)?
        for try await row in rows.decode((Date, Date?, Date).self) { found = row }
        guard let (requested, completed, expires) = found else { throw IdentityError.exportNotFound }
        var parts: [String: JSONValue] = [:]
        for try await (service, data) in try await client.query(
            "SELECT service, data::text FROM export_parts WHERE export_id = \(id)", logger: logger).decode((String, String).self) {
            parts[service] = try JSONValue(json: data)
        }
        let pending = services.filter { parts[$0] == nil }
        return ExportView(id: id, status: completed == nil ? "pending" : "ready", requestedAt: requested, completedAt: completed,
                          expiresAt: expires, pendingServices: pending, parts: completed == nil ? nil : parts)
    }

    /// A participant's part arrived (at most once per service; a redelivery changes nothing).
    ///
    /// Parts arrive on different topics, so two may be handled at once (two partitions, two
    /// replicas): the export row is locked first, so the later one counts the earlier one's part.
    static func receive(_ part: UserExportPartV1, in transaction: Transaction) async throws {
        guard Topics.privacyParticipants.contains(part.service) else { return }
        guard try await transaction.first("""
            SELECT 1 FROM exports WHERE id = \(part.exportId) AND user_id = \(part.userId) AND completed_at IS NULL FOR UPDATE
            """, as: Int.self) != nil else { return }
        try await transaction.query("""
            INSERT INTO export_parts (export_id, service, data) VALUES (\(part.exportId), \(part.service), \(part.data)::jsonb)
            ON CONFLICT DO NOTHING
            """)
        try await transaction.query("""
            UPDATE exports SET completed_at = now()
            WHERE id = \(part.exportId) AND completed_at IS NULL
              AND (SELECT count(*) FROM export_parts WHERE export_id = \(part.exportId)) = \(services.count)
            """)
    }
}

/// Account erasure: re-authenticated, refused while obligations are open, then identity's data is
/// anonymised at once and every participant's once it acknowledges; `user.erased` ends it.
extension AccountService {
    func requestErasure(user: UUID, password: String, proof: MultiFactor.Proof?, address: String?, context: OperationContext) async throws {
        let logger = context.logger
        let rows = try await client.query("""
            SELECT u.email_normalized, c.password_hash, f.sealed_secret, f.last_step FROM users u JOIN credentials c ON c.user_id = u.id
            LEFT JOIN totp_factors f ON f.user_id = u.id AND f.confirmed_at IS NOT NULL WHERE u.id = \(user) AND u.status = 'active'
            """, logger: logger)
        var found: (String, String, ByteBuffer?, Int64?)?
        for try await row in rows.decode((String, String, ByteBuffer?, Int64?).self) { found = row }
        guard let (normalized, hash, sealed, _) = found else { throw IdentityError.userNotFound }
        try await throttle.check(account: normalized, address: address, context: context)
        guard await hasher.verify(password, against: hash) else {
            try await throttle.recordFailure(account: normalized, address: address, context: context)
            throw Problem.validation([FieldError("password", "is not the account's password")])
        }
        if sealed != nil, proof == nil {
            throw Problem.validation([FieldError("code", "is required: the account has two-factor authentication (or give recoveryCode)")])
        }
        let blockers = try await openObligations(of: user, context: context)
        guard blockers.isEmpty else { throw IdentityError.erasureBlocked(blockers) }
        try await Database.transaction(client, context) { transaction in
            if let proof {
                let factor = try await transaction.query(
                    "SELECT sealed_secret, last_step FROM totp_factors WHERE user_id = \(user) AND confirmed_at IS NOT NULL FOR UPDATE")
                var secret: (ByteBuffer, Int64?)?
                for try await row in factor.decode((ByteBuffer, Int64?).self) { secret = row }
                guard let (sealed, lastStep) = secret,
                      try await MultiFactor.accept(proof, user: user, sealed: sealed, lastStep: lastStep, sealer: secrets, in: transaction)
                else { throw Problem.validation([FieldError("code", "is not valid")]) }
            }
            try await Privacy.anonymise(user: user, in: transaction)
            try await transaction.query("DELETE FROM login_throttles WHERE key = \(LoginThrottle.accountKey(normalized))")
            try await transaction.query("INSERT INTO erasures (user_id) VALUES (\(user)) ON CONFLICT DO NOTHING")
            try await SessionStore.revokeAll(of: user, except: nil, reason: "erased", in: transaction)
            try await Outbox.emit(UserEvents.erasureRequested, UserErasureV1(userId: user, at: transaction.now), in: transaction)
            try await AuditLog.record(.erasureRequested, actor: user, target: user, in: transaction)
        }
        logger.info("erasure requested", metadata: ["security.event": "erasure_requested", "user.id": "\(user)"])
    }

    /// What keeps the user from being erased, in words ("1 open order", "1 active subscription").
    func openObligations(of user: UUID, context: OperationContext) async throws -> [String] {
        let rows = try await client.query(
            "SELECT kind, count(*) FROM user_obligations WHERE user_id = \(user) GROUP BY kind ORDER BY kind", logger: context.logger)
        var blockers: [String] = []
        for try await (kind, count) in rows.decode((String, Int).self) {
            let noun = switch kind {
            case "order": "open order"
            case "dispute": "open dispute"
            case "invoice": "unpaid invoice"
            default: "active subscription"
            }
            blockers.append("\(count) \(noun)\(count == 1 ? "" : "s")")
        }
        return blockers
    }
}

extension Privacy {
    /// Identity keeps an erased account's id (records elsewhere point at it) and its audit entries
    /// without free text; everything personal goes.
    static func anonymise(user: UUID, in transaction: Transaction) async throws {
        let (connection, logger) = (transaction.connection, transaction.logger)
        let placeholder = "erased+\(user.uuidString.lowercased())@erased.invalid"
        try await connection.query("""
            UPDATE users SET email = \(placeholder), email_normalized = \(placeholder), display_name = 'Deleted user',
                             status = 'erased', email_verified = false, updated_at = now(), version = version + 1
            WHERE id = \(user)
            """, logger: logger)
        for table in ["credentials", "vendor_profiles", "totp_factors", "recovery_codes", "email_tokens", "mfa_challenges"] {
            try await connection.query("DELETE FROM \(unescaped: table) WHERE user_id = \(user)", logger: logger)
        }
        try await connection.query("UPDATE sessions SET user_agent = NULL WHERE user_id = \(user)", logger: logger)
        try await connection.query("SET LOCAL identity.erasing = 'on'", logger: logger)
        try await connection.query("UPDATE audit_log SET reason = NULL WHERE target_id = \(user) AND reason IS NOT NULL", logger: logger)
        try await connection.query("SET LOCAL identity.erasing = 'off'", logger: logger)
        // The user's exports (their parts hold everything every service had) and what the platform kept.
        try await connection.query("DELETE FROM exports WHERE user_id = \(user)", logger: logger)
        try await PersonalData.forget(user, in: transaction)
    }

    /// Billing or orders says the user is party to something that must run its course first.
    static func obligationOpened(_ o: UserObligationV1, in transaction: Transaction) async throws {
        try await transaction.query("""
            INSERT INTO user_obligations (kind, reference, user_id, opened_at) VALUES (\(o.kind), \(o.reference), \(o.userId), \(o.at))
            ON CONFLICT DO NOTHING
            """)
    }

    static func obligationClosed(_ o: UserObligationV1, in transaction: Transaction) async throws {
        try await transaction.query("""
            DELETE FROM user_obligations WHERE kind = \(o.kind) AND reference = \(o.reference) AND user_id = \(o.userId)
            """)
    }

    /// A participant acknowledged; once all have, the erasure is complete.
    static func acknowledge(_ done: UserErasureCompletedV1, in transaction: Transaction) async throws {
        guard Topics.privacyParticipants.contains(done.service) else { return }
        let rows = try await transaction.query("""
            UPDATE erasures SET acknowledged = array_append(acknowledged, \(done.service))
            WHERE user_id = \(done.userId) AND completed_at IS NULL AND NOT (\(done.service) = ANY (acknowledged))
            RETURNING acknowledged
            """)
        var acknowledged: [String]?
        for try await value in rows.decode([String].self) { acknowledged = value }
        guard let acknowledged, Set(acknowledged).isSuperset(of: Topics.privacyParticipants) else { return }
        let now = transaction.now
        try await transaction.query("UPDATE erasures SET completed_at = \(now) WHERE user_id = \(done.userId)")
        try await Outbox.emit(UserEvents.erased, UserErasureV1(userId: done.userId, at: now), in: transaction)
        try await AuditLog.record(.erased, actor: nil, target: done.userId, in: transaction)
        transaction.logger.info("erasure complete", metadata: ["user.id": "\(done.userId)"])
    }
}
