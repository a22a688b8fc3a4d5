import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// An in-app notification.
struct NotificationView: Codable, Sendable, Equatable {
    var id: UUID
    var kind: String
    var title: String
    var body: String
    /// Where in the client it leads (null: nowhere in particular).
    var link: String?
    var read: Bool
    var createdAt: Date
}

/// Whether a kind of notification is also mailed.
struct PreferenceView: Codable, Sendable, Equatable {
    var kind: String
    var email: Bool
    /// Security mails (verification, password reset, password changed) cannot be turned off.
    var canTurnOff: Bool
}

struct Preferences: Codable, Sendable, Equatable {
    var items: [PreferenceView]
}

/// In-app notifications, mail preferences and one-click unsubscribe.
struct NotificationRoutes: Sendable {
    let client: PostgresClient
    let notifier: Notifier
    let bodyLimit: Int

    /// Unread first, then newest first.
    static let unreadFirst = KeysetOrder([.init("(read_at IS NULL)", .bool, descending: true), .init("created_at", .time, descending: true)],
                                         idColumn: "id", idDescending: true)
    static let binding = KeysetCursor.binding("notifications.mine", sort: "unread-first")

    private struct ReadBody: Decodable {
        var ids: [String]?
        var all: Bool?
    }

    private struct PreferencesBody: Decodable {
        struct Item: Decodable {
            var kind: String?
            var email: Bool?
        }
        var items: [Item]?
    }

    struct Marked: Codable, Sendable {
        var marked: Int
        var unreadCount: Int
    }

    struct Unsubscribed: Codable, Sendable {
        var kind: String
        var email: Bool
    }

    func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.get("/v1/notifications") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let page = try KeysetPageRequest(request, order: Self.unreadFirst, binding: Self.binding)
            let found = try await Database.transaction(client, context.operation) { tx -> Page<NotificationView> in
                let rows = try await tx.query("""
                    SELECT id, kind, title, body, link, read_at IS NOT NULL, created_at FROM notifications
                    WHERE user_id = \(caller.userId) AND \(after: page)
                    ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
                    """)
                var items: [NotificationView] = []
                for try await (id, kind, title, body, link, read, created) in rows.decode((UUID, String, String, String, String?, Bool, Date).self) {
                    items.append(NotificationView(id: id, kind: kind, title: title, body: body, link: link, read: read, createdAt: created))
                }
                return page.page(items) { KeysetCursor(values: [.bool(!$0.read), .time($0.createdAt)], id: $0.id) }
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        signedIn.post("/v1/notifications/read") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let body = try await JSONBody.decode(ReadBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            var ids: [UUID] = []
            switch (body.ids, body.all) {
            case (let given?, nil), (let given?, false?):
                if given.isEmpty || given.count > 100 { v.add("ids", "must list 1 to 100 notification ids") }
                for (index, text) in given.enumerated() {
                    if let id = v.uuid(text, "ids.\(index)") { ids.append(id) }
                }
            case (nil, true?): break
            case (_?, true?): v.add("all", "give either ids or all, not both")
            default: v.add("ids", "give the ids to mark read, or all: true")
            }
            try v.check()
            let markAll = body.all == true
            let marked = try await Database.transaction(client, context.operation) { tx -> Marked in
                let count = try await tx.first("""
                    WITH marked AS (
                        UPDATE notifications SET read_at = \(tx.now)
                        WHERE user_id = \(caller.userId) AND read_at IS NULL AND (\(markAll) OR id = ANY(\(ids)))
                        RETURNING 1
                    ) SELECT count(*) FROM marked
                    """, as: Int64.self) ?? 0
                let unread = try await tx.first("SELECT count(*) FROM notifications WHERE user_id = \(caller.userId) AND read_at IS NULL",
                                                as: Int64.self) ?? 0
                return Marked(marked: Int(count), unreadCount: Int(unread))
            }
            return try JSONResponse.make(marked, cacheControl: "private, no-store")
        }
        signedIn.get("/v1/notifications/preferences") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let found = try await Database.transaction(client, context.operation) { tx in try await preferences(of: caller.userId, in: tx) }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        signedIn.put("/v1/notifications/preferences") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let body = try await JSONBody.decode(PreferencesBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            var changes: [(String, Bool)] = []
            if let items = body.items {
                for (index, item) in items.enumerated() {
                    guard let kind = item.kind, let known = NotificationKind.named(kind) else {
                        v.add("items.\(index).kind", "must be one of the kinds GET /v1/notifications/preferences lists")
                        continue
                    }
                    guard let email = item.email else {
                        v.add("items.\(index).email", "is required")
                        continue
                    }
                    if !known.canTurnOff && !email { v.add("items.\(index).email", "security mails cannot be turned off") }
                    changes.append((kind, email))
                }
            } else {
                v.add("items", "is required")
            }
            try v.check()
            let found = try await Database.transaction(client, context.operation) { tx -> Preferences in
                try await set(changes, for: caller.userId, in: tx)
                return try await preferences(of: caller.userId, in: tx)
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        // The link in every mail that may be turned off (and its `List-Unsubscribe` header): no
        // sign-in, the signed token names the user and the kind. POST is RFC 8058's one click.
        for method in [HTTPRequest.Method.get, .post] {
            router.on("/v1/notifications/unsubscribe/{token}", method: method) { request, context -> Response in
                var v = Validator()
                let token = v.text(context.parameters.get("token"), "token", length: 1...300)
                try v.check()
                let done = try await Database.transaction(client, context.operation) { tx -> Unsubscribed in
                    guard let token, let (user, kind) = try await notifier.links(tx).verify(token),
                          NotificationKind.named(kind)?.canTurnOff == true else {
                        throw Problem.validation([FieldError("token", "is not a valid unsubscribe link")])
                    }
                    try await set([(kind, false)], for: user, in: tx)
                    return Unsubscribed(kind: kind, email: false)
                }
                return try JSONResponse.make(done, cacheControl: "no-store")
            }
        }
    }

    private func set(_ given: [(String, Bool)], for user: UUID, in tx: Transaction) async throws {
        // A kind named twice: the last one counts (one row per kind in the statement).
        var latest: [String: Bool] = [:]
        for (kind, email) in given { latest[kind] = email }
        let changes = latest.sorted { $0.key < $1.key }
        guard !changes.isEmpty else { return }
        try await tx.query("""
            INSERT INTO notification_preferences (user_id, kind, email, updated_at)
            SELECT \(user), kind, email, \(tx.now) FROM unnest(\(changes.map(\.0)), \(changes.map(\.1))) AS c (kind, email)
            ON CONFLICT (user_id, kind) DO UPDATE SET email = EXCLUDED.email, updated_at = EXCLUDED.updated_at
            """)
    }

    private func preferences(of user: UUID, in tx: Transaction) async throws -> Preferences {
        let rows = try await tx.query("SELECT kind, email FROM notification_preferences WHERE user_id = \(user)")
        var off: [String: Bool] = [:]
        for try await (kind, email) in rows.decode((String, Bool).self) { off[kind] = email }
        return Preferences(items: NotificationKind.all.map { kind in
            PreferenceView(kind: kind.id, email: kind.canTurnOff ? off[kind.id] ?? true : true, canTurnOff: kind.canTurnOff)
        })
    }
}
