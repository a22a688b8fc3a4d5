import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// A report as its reporter and the desk see it.
struct ReportView: Codable, Sendable, Equatable {
    var id: UUID
    var conversationId: UUID
    var messageId: UUID?
    var reporterId: UUID
    var reason: String
    var status: ReportStatus
    var action: ReportAction?
    var note: String?
    var resolvedBy: UUID?
    var resolvedAt: Date?
    var createdAt: Date
}

enum ReportStatus: String, Codable, CaseIterable, Sendable { case open, resolved }
enum ReportAction: String, Codable, CaseIterable, Sendable {
    case dismiss
    case removeMessage = "remove_message"
}

/// A report's life: open until a moderator resolves it, one way or the other. Pure.
enum ReportStateMachine {
    static func transition(from status: ReportStatus, on action: ReportAction) throws -> ReportStatus {
        switch (status, action) {
        case (.open, .dismiss), (.open, .removeMessage): .resolved
        case (.resolved, _): throw Problem.invalidTransition(action == .dismiss ? "dismissed" : "resolved", from: status.rawValue, resource: "report")
        }
    }
}

/// Reports: filed by a participant, worked by the desk oldest first.
enum Reports {
    static let oldestFirst = KeysetOrder([.init("created_at", .time)], idColumn: "id")
    static func binding(_ status: ReportStatus) -> String { KeysetCursor.binding("moderation.reports", sort: "oldest", filters: [("status", status.rawValue)]) }

    private static let columns = "id, conversation_id, message_id, reporter_id, reason, status, action, note, resolved_by, resolved_at, created_at"

    private static func views(_ rows: PostgresRowSequence) async throws -> [ReportView] {
        var views: [ReportView] = []
        for try await (id, conversation, message, reporter, reason, status, action, note, resolvedBy, resolvedAt, created)
            in rows.decode((UUID, UUID, UUID?, UUID, String, String, String?, String?, UUID?, Date?, Date).self) {
            views.append(ReportView(id: id, conversationId: conversation, messageId: message, reporterId: reporter, reason: reason,
                                    status: ReportStatus(rawValue: status) ?? .open, action: action.flatMap(ReportAction.init(rawValue:)),
                                    note: note, resolvedBy: resolvedBy, resolvedAt: resolvedAt, createdAt: created))
        }
        return views
    }

    /// Files the report, or answers the reporter's open one about the same thing (a double tap).
    static func file(conversation: UUID, message: UUID?, by reporter: UUID, reason: String, in tx: Transaction) async throws -> (ReportView, Bool) {
        let created = try await views(try await tx.query("""
            INSERT INTO reports (id, conversation_id, message_id, reporter_id, reason, status, created_at)
            VALUES (\(UUID.v7()), \(conversation), \(message), \(reporter), \(reason), 'open', \(tx.now))
            ON CONFLICT (reporter_id, conversation_id, coalesce(message_id, '00000000-0000-0000-0000-000000000000')) WHERE status = 'open' DO NOTHING
            RETURNING \(unescaped: columns)
            """))
        if let report = created.first { return (report, true) }
        let existing = try await views(try await tx.query("""
            SELECT \(unescaped: columns) FROM reports
            WHERE reporter_id = \(reporter) AND conversation_id = \(conversation) AND message_id IS NOT DISTINCT FROM \(message) AND status = 'open'
            """))
        guard let report = existing.first else { throw Problem(.serviceUnavailable, "The report changed meanwhile; try again.", headers: [.retryAfter: "1"]) }
        return (report, false)
    }

    static func page(_ status: ReportStatus, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<ReportView> {
        let items = try await views(try await tx.query("""
            SELECT \(unescaped: columns) FROM reports WHERE status = \(status.rawValue) AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """))
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    /// The conversation's reports, oldest first (the newest 100 at most).
    static func about(_ conversation: UUID, in tx: Transaction) async throws -> [ReportView] {
        try await views(try await tx.query("""
            SELECT \(unescaped: columns) FROM (
                SELECT \(unescaped: columns) FROM reports WHERE conversation_id = \(conversation) ORDER BY created_at DESC LIMIT 100
            ) latest ORDER BY created_at
            """))
    }

    static func load(_ id: UUID, lock: Bool, in tx: Transaction) async throws -> ReportView? {
        try await views(try await tx.query("SELECT \(unescaped: columns) FROM reports WHERE id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")")).first
    }

    /// Resolves the report; `remove_message` removes the reported message for both participants
    /// (kept, with its body, for the desk). Recorded in the audit log with the note.
    static func resolve(_ id: UUID, action: ReportAction, note: String, by moderator: Principal, in tx: Transaction) async throws -> ReportView {
        guard let report = try await load(id, lock: true, in: tx) else { throw MessagingError.reportNotFound }
        _ = try ReportStateMachine.transition(from: report.status, on: action)
        if action == .removeMessage {
            guard let message = report.messageId else {
                throw Problem.validation([FieldError("action", "this report is about the whole conversation: there is no message to remove")])
            }
            try await tx.query("UPDATE messages SET removed_at = \(tx.now), removed_by = \(moderator.userId) WHERE id = \(message) AND removed_at IS NULL")
        }
        let resolved = try await views(try await tx.query("""
            UPDATE reports SET status = 'resolved', action = \(action.rawValue), note = \(note), resolved_by = \(moderator.userId), resolved_at = \(tx.now)
            WHERE id = \(id) RETURNING \(unescaped: columns)
            """))
        try await StaffReads.record(moderator, read: "report.\(action.rawValue)", id: id, reason: note, in: tx)
        guard let view = resolved.first else { throw MessagingError.reportNotFound }
        return view
    }
}

/// Someone the caller blocked.
struct BlockView: Codable, Sendable, Equatable {
    var userId: UUID
    var displayName: String
    var createdAt: Date
}

/// An entry of the staff audit log.
struct AuditEntryView: Codable, Sendable, Equatable {
    var id: UUID
    var actorId: UUID
    var actorName: String
    /// What was read or done: `conversation` (a desk read), `report.dismiss`, `report.remove_message`.
    var subject: String
    var subjectId: UUID?
    var reason: String?
    var requestId: String?
    var at: Date
}

/// Blocks, the moderation desk and the audit log.
struct ModerationRoutes: Sendable {
    let client: PostgresClient
    let conversations: ConversationRepository
    let bodyLimit: Int

    static let blocksNewestFirst = KeysetOrder([.init("created_at", .time, descending: true)], idColumn: "blocked_id", idDescending: true)
    static let blocksBinding = KeysetCursor.binding("blocks.mine", sort: "newest")
    static let auditNewestFirst = KeysetOrder([.init("at", .time, descending: true)], idColumn: "entry_id", idDescending: true)
    static let auditBinding = KeysetCursor.binding("moderation.audit-log", sort: "newest")

    private struct BlockBody: Decodable { var userId: String? }
    private struct ResolveBody: Decodable {
        var action: String?
        var note: String?
    }

    /// A desk read: the conversation, its messages as written (a page, newest first), its reports.
    struct DeskView: Codable, Sendable {
        var conversation: DeskConversation
        /// The messages, a page of them.
        var items: [DeskMessageView]
        var nextCursor: String?
        var reports: [ReportView]
    }

    /// The conversations of an order's parties at the desk, oldest first; a cursor is bound to its order.
    static let deskConversationsOldestFirst = KeysetOrder([.init("c.created_at", .time)], idColumn: "c.id")
    static func deskConversationsBinding(_ order: UUID) -> String {
        KeysetCursor.binding("moderation.order-conversations", sort: "oldest", filters: [("order", order.lowercased)])
    }

    struct DeskConversation: Codable, Sendable {
        var id: UUID
        var buyerId: UUID
        var vendorId: UUID
        var listingId: UUID?
        var orderId: UUID?
    }

    func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.get("/v1/blocks") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let page = try KeysetPageRequest(request, order: Self.blocksNewestFirst, binding: Self.blocksBinding)
            let found = try await Database.transaction(client, context.operation) { tx -> Page<BlockView> in
                let rows = try await tx.query("""
                    SELECT b.blocked_id, coalesce(u.display_name, 'Unknown user'), b.created_at
                    FROM blocks b LEFT JOIN users u ON u.id = b.blocked_id
                    WHERE b.blocker_id = \(caller.userId) AND \(after: page)
                    ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
                    """)
                var items: [BlockView] = []
                for try await (user, name, created) in rows.decode((UUID, String, Date).self) {
                    items.append(BlockView(userId: user, displayName: name, createdAt: created))
                }
                return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.userId) }
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        signedIn.post("/v1/blocks") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let body = try await JSONBody.decode(BlockBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let user = v.uuid(body.userId, "userId")
            if let user, user == caller.userId { v.add("userId", "is you: you cannot block yourself") }
            try v.check()
            guard let user else { throw Problem.validation([]) }
            let (view, created) = try await Database.transaction(client, context.operation) { tx -> (BlockView, Bool) in
                guard let name = try await tx.first("SELECT display_name FROM users WHERE id = \(user)", as: String.self) else {
                    throw MessagingError.userNotFound
                }
                let inserted = try await tx.first("""
                    INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (\(caller.userId), \(user), \(tx.now))
                    ON CONFLICT DO NOTHING RETURNING created_at
                    """, as: Date.self)
                if let inserted { return (BlockView(userId: user, displayName: name, createdAt: inserted), true) }
                let at = try await tx.first("SELECT created_at FROM blocks WHERE blocker_id = \(caller.userId) AND blocked_id = \(user)", as: Date.self)
                return (BlockView(userId: user, displayName: name, createdAt: at ?? tx.now), false)
            }
            return try JSONResponse.make(view, status: created ? .created : .ok, cacheControl: "private, no-store")
        }
        signedIn.delete("/v1/blocks/{userId}") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let user = try context.uuidParameter("userId", notFound: MessagingError.notBlocked)
            try await Database.transaction(client, context.operation) { tx in
                guard try await tx.first("DELETE FROM blocks WHERE blocker_id = \(caller.userId) AND blocked_id = \(user) RETURNING 1", as: Int32.self) != nil
                else { throw MessagingError.notBlocked }
            }
            return Response(status: .noContent, headers: [.cacheControl: "private, no-store"])
        }

        let desk = router.group("/v1/moderation").add(middleware: RequireRole(.moderator, .admin))
        desk.get("/reports") { request, context -> Response in
            var v = Validator()
            let status = v.oneOf(request.queryString("status"), "status", as: ReportStatus.self, required: false) ?? .open
            try v.check()
            let page = try KeysetPageRequest(request, order: Reports.oldestFirst, binding: Reports.binding(status))
            let found = try await Database.transaction(client, context.operation) { tx in try await Reports.page(status, page, in: tx) }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        desk.post("/reports/{id}/resolve") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.reportNotFound)
            let body = try await JSONBody.decode(ResolveBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let action = v.oneOf(body.action, "action", as: ReportAction.self)
            let note = v.text(body.note, "note", length: 1...2000, multiline: true)
            try v.check()
            guard let action, let note else { throw Problem.validation([]) }
            let view = try await Database.transaction(client, context.operation) { tx in
                try await Reports.resolve(id, action: action, note: note, by: caller, in: tx)
            }
            return try JSONResponse.make(view, cacheControl: "private, no-store")
        }
        // A dispute's desk: the conversations between an order's two parties (about the order, or
        // about its listing before it), found by the order; reading one is then the read below.
        desk.get("/conversations") { request, context -> Response in
            let caller = try context.requirePrincipal()
            var v = Validator()
            let order = v.uuid(request.queryString("orderId"), "orderId")
            let reason = v.text(request.queryString("reason"), "reason", length: 3...500)
            try v.check()
            guard let order, let reason else { throw Problem.validation([]) }
            let page = try KeysetPageRequest(request, order: Self.deskConversationsOldestFirst, binding: Self.deskConversationsBinding(order))
            let found = try await Database.transaction(client, context.operation) { tx -> Page<DeskConversation> in
                try await StaffReads.record(caller, read: "order conversations", id: order, reason: reason, in: tx)
                var items: [(DeskConversation, Date)] = []
                for try await (id, buyer, vendor, listing, orderId, created) in try await tx.query("""
                    SELECT c.id, c.buyer_id, c.vendor_id, c.listing_id, c.order_id, c.created_at
                    FROM order_facts f JOIN conversations c
                      ON (c.buyer_id = f.buyer_id AND c.order_id = f.order_id)
                      OR (c.buyer_id = f.buyer_id AND c.listing_id = f.listing_id AND c.order_id IS NULL)
                    WHERE f.order_id = \(order) AND \(after: page)
                    ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
                    """).decode((UUID, UUID, UUID, UUID?, UUID?, Date).self) {
                    items.append((DeskConversation(id: id, buyerId: buyer, vendorId: vendor, listingId: listing, orderId: orderId), created))
                }
                let created = Dictionary(items.map { ($0.0.id, $0.1) }, uniquingKeysWith: { first, _ in first })
                return page.page(items.map(\.0)) { KeysetCursor(values: [.time(created[$0.id] ?? Date())], id: $0.id) }
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
        desk.get("/conversations/{id}") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            var v = Validator()
            let reason = v.text(request.queryString("reason"), "reason", required: false, length: 3...500)
            try v.check()
            let page = try KeysetPageRequest(request, order: ConversationRepository.messagesNewestFirst,
                                             binding: ConversationRepository.messagesBinding(id))
            let view = try await Database.transaction(client, context.operation) { tx -> DeskView in
                guard let conversation = try await conversations.load(id, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.staffRead, conversation.facts, by: caller, reason: reason)
                try await StaffReads.record(caller, read: "conversation", id: id, reason: reason ?? "reported", in: tx)
                let messages = try await conversations.deskMessages(of: id, page, in: tx)
                let reportViews = try await Reports.about(id, in: tx)
                return DeskView(conversation: DeskConversation(id: conversation.id, buyerId: conversation.buyerId, vendorId: conversation.vendorId,
                                                               listingId: conversation.listingId, orderId: conversation.orderId),
                                items: messages.items, nextCursor: messages.nextCursor, reports: reportViews)
            }
            return try JSONResponse.make(view, cacheControl: "private, no-store")
        }

        let admins = router.group("/v1/moderation/audit-log").add(middleware: RequireRole(.admin))
        admins.get { request, context -> Response in
            let page = try KeysetPageRequest(request, order: Self.auditNewestFirst, binding: Self.auditBinding)
            let found = try await Database.transaction(client, context.operation) { tx -> Page<AuditEntryView> in
                let rows = try await tx.query("""
                    SELECT s.entry_id, s.actor_id, coalesce(u.display_name, 'Unknown user'), s.subject, s.subject_id, s.reason, s.request_id, s.at
                    FROM staff_reads s LEFT JOIN users u ON u.id = s.actor_id
                    WHERE \(after: page)
                    ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
                    """)
                var items: [AuditEntryView] = []
                for try await (id, actor, name, subject, subjectId, reason, requestId, at)
                    in rows.decode((UUID, UUID, String, String, UUID?, String?, String?, Date).self) {
                    items.append(AuditEntryView(id: id, actorId: actor, actorName: name, subject: subject, subjectId: subjectId,
                                                reason: reason, requestId: requestId, at: at))
                }
                return page.page(items) { KeysetCursor(values: [.time($0.at)], id: $0.id) }
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }
    }
}
