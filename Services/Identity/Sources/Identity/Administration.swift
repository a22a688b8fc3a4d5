import Contracts
import Foundation
import Logging
import Platform
import PostgresNIO

/// Who may administer users: an admin whose token came from a second-factor session and whose
/// account still holds the role (a role removed a moment ago counts, whatever the token says).
struct AdministrationPolicy: Sendable {
    let client: PostgresClient

    func requireAdmin(_ caller: Principal, context: OperationContext) async throws {
        guard caller.has(.admin) else { throw IdentityError.forbidden }
        let rows = try await client.query(
            "SELECT 1 FROM users WHERE id = \(caller.userId) AND status = 'active' AND roles @> ARRAY['admin']", logger: context.logger)
        for try await _ in rows.decode(Int.self) { return }
        throw IdentityError.forbidden
    }
}

/// User administration: list and search, role changes, suspension and reinstatement, each
/// written to the audit log in the same transaction as the change.
struct Administration: Sendable {
    let client: PostgresClient

    struct UserFilter: Sendable {
        var role: String?
        var status: String?
        /// A prefix of the normalised email address.
        var emailPrefix: String?
    }

    /// Newest accounts first.
    static let newestFirst = KeysetOrder([.init("u.created_at", .time, descending: true)], idColumn: "u.id", idDescending: true)

    /// The binding of a page of this list: a cursor taken under other filters is refused.
    static func binding(_ filter: UserFilter) -> String {
        KeysetCursor.binding("admin.users", sort: "newest",
                             filters: [("role", filter.role ?? ""), ("status", filter.status ?? ""), ("email", filter.emailPrefix ?? "")])
    }

    /// Newest accounts first, one keyset page.
    func users(_ filter: UserFilter, _ page: KeysetPageRequest, context: OperationContext) async throws -> Page<UserView> {
        // No stored address holds U+0000 (Postgres text cannot): such a prefix matches nobody.
        if filter.emailPrefix?.contains("\u{0}") == true { return Page(items: [], nextCursor: nil) }
        let pattern = filter.emailPrefix.map { Self.escapeLike($0) + "%" }
        let rows = try await client.query("""
            SELECT \(unescaped: UserView.columns) FROM users u
            LEFT JOIN vendor_profiles v ON v.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id
            WHERE (\(filter.role)::text IS NULL OR u.roles @> ARRAY[\(filter.role)::text])
              AND (\(filter.status)::text IS NULL OR u.status = \(filter.status))
              AND (\(pattern)::text IS NULL OR u.email_normalized LIKE \(pattern))
              AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """, logger: context.logger)
        var users: [UserView] = []
        for try await row in rows { users.append(try UserView(row)) }
        return page.page(users) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    func user(_ id: UUID, context: OperationContext) async throws -> UserView {
        let rows = try await client.query("""
            SELECT \(unescaped: UserView.columns) FROM users u
            LEFT JOIN vendor_profiles v ON v.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id WHERE u.id = \(id)
            """, logger: context.logger)
        for try await row in rows { return try UserView(row) }
        throw IdentityError.targetNotFound
    }

    /// Replaces the staff roles of `target`. Buyer and vendor stay as the user chose them; an admin
    /// cannot remove their own admin role. The user's sessions end so no token keeps an old role.
    func setRoles(_ roles: [String], of target: UUID, reason: String, actor: UUID, context: OperationContext) async throws -> UserView {
        try await Database.transaction(client, context) { transaction in
            let current = try await lockUser(target, in: transaction)
            let staff = Set(Role.staff.map(\.rawValue))
            let selfService = Set(current.roles).subtracting(staff)
            guard Set(roles).subtracting(staff) == selfService else {
                throw Problem.validation([FieldError("roles", "only moderator and admin can be granted or removed; keep \(selfService.sorted().joined(separator: ", "))")])
            }
            if target == actor, current.roles.contains("admin"), !roles.contains("admin") { throw IdentityError.cannotDemoteSelf }
            let ordered = Role.names.filter(roles.contains)
            guard Set(ordered) != Set(current.roles) else { return current.view }
            try await transaction.query("UPDATE users SET roles = \(ordered), updated_at = now(), version = version + 1 WHERE id = \(target)")
            try await Outbox.emit(UserEvents.roleChanged, UserRoleChangedV1(userId: target, roles: ordered, changedAt: transaction.now), in: transaction)
            try await SessionStore.revokeAll(of: target, except: nil, reason: "role-changed", in: transaction)
            try await AuditLog.record(.rolesChanged, actor: actor, target: target, reason: reason,
                                      details: ["from": current.roles.joined(separator: " "), "to": ordered.joined(separator: " ")],
                                      in: transaction)
            var view = current.view
            view.roles = ordered
            return view
        }
    }

    /// Suspends `target`: no sign-in, every session ended, tokens refused at the gateway.
    func suspend(_ target: UUID, reason: String, actor: UUID, context: OperationContext) async throws -> UserView {
        guard target != actor else { throw IdentityError.cannotSuspendSelf }
        return try await changeStatus(of: target, to: "suspended", reason: reason, actor: actor, context: context)
    }

    func reinstate(_ target: UUID, reason: String, actor: UUID, context: OperationContext) async throws -> UserView {
        try await changeStatus(of: target, to: "active", reason: reason, actor: actor, context: context)
    }

    /// Repeating a suspension or reinstatement changes nothing and emits nothing.
    private func changeStatus(of target: UUID, to status: String, reason: String, actor: UUID, context: OperationContext) async throws -> UserView {
        try await Database.transaction(client, context) { transaction in
            let current = try await lockUser(target, in: transaction)
            guard current.status != status else { return current.view }
            try await transaction.query("UPDATE users SET status = \(status), updated_at = now(), version = version + 1 WHERE id = \(target)")
            let suspending = status == "suspended"
            let payload = UserStatusChangedV1(userId: target, status: status, changedAt: transaction.now)
            try await Outbox.emit(suspending ? UserEvents.suspended : UserEvents.reinstated, payload, in: transaction)
            if suspending {
                try await SessionStore.revokeAll(of: target, except: nil, reason: "suspended", in: transaction)
            }
            try await AuditLog.record(suspending ? .suspended : .reinstated, actor: actor, target: target, reason: reason, in: transaction)
            transaction.logger.info(suspending ? "user suspended" : "user reinstated", metadata: ["user.id": "\(target)", "actor.id": "\(actor)"])
            var view = current.view
            view.status = status
            return view
        }
    }

    private struct Locked {
        var view: UserView
        var roles: [String] { view.roles }
        var status: String { view.status }
    }

    private func lockUser(_ id: UUID, in transaction: Transaction) async throws -> Locked {
        let rows = try await transaction.query("""
            SELECT \(unescaped: UserView.columns) FROM users u
            LEFT JOIN vendor_profiles v ON v.user_id = u.id LEFT JOIN totp_factors f ON f.user_id = u.id
            WHERE u.id = \(id) AND u.status <> 'erased' FOR UPDATE OF u
            """)
        for try await row in rows { return Locked(view: try UserView(row)) }
        throw IdentityError.targetNotFound
    }

    static func escapeLike(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
    }

    /// `identity create-admin`: the first admin, made from the command line. An existing account
    /// with that email is promoted instead (its password unchanged). The admin must enrol TOTP at
    /// first sign-in before admin rights reach any token.
    static func createAdmin(email: String, displayName: String, password: String, client: PostgresClient,
                            context: OperationContext) async throws -> (id: UUID, created: Bool) {
        let normalized = RegistrationRules.normalize(email: email)
        guard RegistrationRules.isPlausibleEmail(email) else { throw Problem.validation([FieldError("email", "must be a valid email address")]) }
        let hash = try await PasswordHasher().hash(password)
        return try await Database.transaction(client, context) { transaction in
            let rows = try await transaction.query(
                "SELECT id, roles FROM users WHERE email_normalized = \(normalized) AND status <> 'erased' FOR UPDATE")
            var existing: (UUID, [String])?
            for try await row in rows.decode((UUID, [String]).self) { existing = row }
            if let (id, roles) = existing {
                guard !roles.contains("admin") else { return (id, false) }
                let promoted = Role.names.filter { roles.contains($0) || $0 == "admin" }
                try await transaction.query("UPDATE users SET roles = \(promoted), updated_at = now(), version = version + 1 WHERE id = \(id)")
                try await Outbox.emit(UserEvents.roleChanged, UserRoleChangedV1(userId: id, roles: promoted, changedAt: transaction.now), in: transaction)
                try await SessionStore.revokeAll(of: id, except: nil, reason: "role-changed", in: transaction)
                try await AuditLog.record(.adminBootstrapped, actor: nil, target: id, reason: "identity create-admin", details: ["promoted": "true"],
                                          in: transaction)
                return (id, false)
            }
            let id = UUID.v7()
            let roles = ["admin"]
            try await transaction.query("""
                INSERT INTO users (id, email, email_normalized, display_name, roles, email_verified)
                VALUES (\(id), \(email), \(normalized), \(displayName), \(roles), true)
                """)
            try await transaction.query("INSERT INTO credentials (user_id, password_hash) VALUES (\(id), \(hash))")
            let payload = UserRegisteredV1(userId: id, displayName: displayName, roles: roles, status: "active", registeredAt: transaction.now)
            try await Outbox.emit(UserEvents.registered, payload, in: transaction)
            try await Notifications.address(of: id, is: email, verified: true, in: transaction)
            try await AuditLog.record(.adminBootstrapped, actor: nil, target: id, reason: "identity create-admin", in: transaction)
            return (id, true)
        }
    }
}
