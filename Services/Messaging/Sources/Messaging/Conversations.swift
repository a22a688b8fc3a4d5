import Foundation
import Platform
import PostgresNIO

/// A conversation as one of its participants sees it.
struct ConversationView: Codable, Sendable, Equatable {
    struct Party: Codable, Sendable, Equatable {
        var id: UUID
        var displayName: String
    }

    var id: UUID
    var listingId: UUID?
    var orderId: UUID?
    var buyerId: UUID
    var vendorId: UUID
    /// The listing's title, kept current from listings' events.
    var title: String?
    /// The order's status, from orders' events (null when about a listing).
    var orderStatus: String?
    /// The other participant.
    var otherParty: Party
    /// Messages from the other party since the caller last marked the conversation read.
    var unreadCount: Int
    /// Contact details in the other party's messages are shown (an order between the two was paid).
    var contactDetailsShared: Bool
    var lastMessageAt: Date?
    var lastActivityAt: Date
    var createdAt: Date
}

/// A message as a participant sees it. `body` is null when the message was deleted or removed;
/// `masked` says contact details were hidden from the caller.
struct MessageView: Codable, Sendable, Equatable {
    enum State: String, Codable, Sendable { case sent, deleted, removed }
    var id: UUID
    var conversationId: UUID
    var authorId: UUID
    var body: String?
    var masked: Bool
    var state: State
    var createdAt: Date
}

/// A message as the moderation desk sees it: the original, whatever happened to it.
struct DeskMessageView: Codable, Sendable, Equatable {
    var id: UUID
    var authorId: UUID
    var body: String
    /// What the recipient saw while contact details were hidden (null: nothing was hidden).
    var maskedBody: String?
    var deletedAt: Date?
    var removedAt: Date?
    var removedBy: UUID?
    var createdAt: Date
}

/// The conversation's row and what the policy needs about it, read in one statement.
struct ConversationRow: Sendable {
    var id: UUID
    var buyerId: UUID
    var vendorId: UUID
    var listingId: UUID?
    var orderId: UUID?
    var blockers: Set<UUID>
    var reported: Bool
    var paid: Bool

    var facts: ConversationPolicy.Facts {
        ConversationPolicy.Facts(buyerId: buyerId, vendorId: vendorId, blockers: blockers, reported: reported)
    }

    func other(than user: UUID) -> UUID { user == buyerId ? vendorId : buyerId }
}

/// Conversations and their messages: the SQL, one statement per step.
struct ConversationRepository: Sendable {
    /// Latest activity first. A conversation that gets a new message while a client pages moves to
    /// the top: the client sees it there on its next first page (a list ordered by activity moves).
    static let latestFirst = KeysetOrder([.init("last_activity_at", .time, descending: true)], idColumn: "id", idDescending: true)
    static let binding = KeysetCursor.binding("conversations.mine", sort: "activity")
    static let messagesNewestFirst = KeysetOrder([.init("created_at", .time, descending: true)], idColumn: "id", idDescending: true)
    static func messagesBinding(_ conversation: UUID) -> String {
        KeysetCursor.binding("conversations.messages", sort: "newest", filters: [("conversation", conversation.lowercased)])
    }

    /// The longest message body, in characters.
    static let maximumBody = 4000

    private typealias ViewColumns = (UUID, UUID?, UUID?, UUID, UUID, String?, String?, UUID, String, Int32, Bool, Date?, Date, Date)

    /// The conversations `ids` as `caller` sees them, latest activity first: one statement.
    func views(_ ids: [UUID], for caller: UUID, in tx: Transaction) async throws -> [ConversationView] {
        let rows = try await tx.query("""
            SELECT c.id, c.listing_id, c.order_id, c.buyer_id, c.vendor_id, coalesce(l.title, c.subject_title), o.status,
                   CASE WHEN c.buyer_id = \(caller) THEN c.vendor_id ELSE c.buyer_id END,
                   coalesce(u.display_name, 'Unknown user'),
                   CASE WHEN c.buyer_id = \(caller) THEN c.buyer_unread ELSE c.vendor_unread END,
                   EXISTS (SELECT 1 FROM paid_pairs p WHERE p.buyer_id = c.buyer_id AND p.vendor_id = c.vendor_id),
                   c.last_message_at, c.last_activity_at, c.created_at
            FROM conversations c
            LEFT JOIN listing_facts l ON l.listing_id = c.listing_id
            LEFT JOIN order_facts o ON o.order_id = c.order_id
            LEFT JOIN users u ON u.id = CASE WHEN c.buyer_id = \(caller) THEN c.vendor_id ELSE c.buyer_id END
            WHERE c.id = ANY(\(ids))
            ORDER BY c.last_activity_at DESC, c.id DESC
            """)
        var views: [ConversationView] = []
        for try await (id, listing, order, buyer, vendor, title, status, other, name, unread, paid, lastMessage, activity, created)
            in rows.decode(ViewColumns.self) {
            views.append(ConversationView(id: id, listingId: listing, orderId: order, buyerId: buyer, vendorId: vendor, title: title,
                                          orderStatus: status, otherParty: .init(id: other, displayName: name), unreadCount: Int(unread),
                                          contactDetailsShared: paid, lastMessageAt: lastMessage, lastActivityAt: activity, createdAt: created))
        }
        return views
    }

    func view(_ id: UUID, for caller: UUID, in tx: Transaction) async throws -> ConversationView? {
        try await views([id], for: caller, in: tx).first
    }

    /// The caller's conversations, latest activity first: one index range scan per side, merged.
    func page(participant: UUID, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<ConversationView> {
        let ids = try await tx.query("""
            SELECT id, last_activity_at FROM (
                (SELECT id, last_activity_at FROM conversations WHERE buyer_id = \(participant) AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
                UNION ALL
                (SELECT id, last_activity_at FROM conversations WHERE vendor_id = \(participant) AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
            ) mine ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)
        var wanted: [UUID] = []
        for try await (id, _) in ids.decode((UUID, Date).self) { wanted.append(id) }
        guard !wanted.isEmpty else { return Page(items: [], nextCursor: nil) }
        let items = try await views(wanted, for: participant, in: tx)
        return page.page(items) { KeysetCursor(values: [.time($0.lastActivityAt)], id: $0.id) }
    }

    /// The conversation with its blocks, open reports and paid-order fact; `lock` takes its row
    /// (posting and reading update its counters). A prepared statement: every request runs it.
    func load(_ id: UUID, lock: Bool = false, in tx: Transaction) async throws -> ConversationRow? {
        lock ? try await tx.execute(LoadConversationForUpdate(id: id)).first : try await tx.execute(LoadConversation(id: id)).first
    }

    /// Opens the buyer's conversation about a listing or an order, or finds the one there is.
    /// Answers its id and whether it is new.
    func open(buyer: UUID, vendor: UUID, listingId: UUID?, orderId: UUID?, title: String?, in tx: Transaction) async throws -> (UUID, Bool) {
        let id = UUID.v7()
        let conflict = orderId == nil ? "(buyer_id, listing_id) WHERE order_id IS NULL" : "(buyer_id, order_id) WHERE order_id IS NOT NULL"
        if let created = try await tx.first("""
            INSERT INTO conversations (id, buyer_id, vendor_id, listing_id, order_id, subject_title, created_at, last_activity_at)
            VALUES (\(id), \(buyer), \(vendor), \(listingId), \(orderId), \(title), \(tx.now), \(tx.now))
            ON CONFLICT \(unescaped: conflict) DO NOTHING RETURNING id
            """, as: UUID.self) {
            return (created, true)
        }
        let existing = orderId == nil
            ? try await tx.first("SELECT id FROM conversations WHERE buyer_id = \(buyer) AND listing_id = \(listingId) AND order_id IS NULL", as: UUID.self)
            : try await tx.first("SELECT id FROM conversations WHERE buyer_id = \(buyer) AND order_id = \(orderId)", as: UUID.self)
        // The conflicting row is committed (ON CONFLICT waited for it), so this finds it; if it was
        // removed in between, the client's retry opens a new one.
        guard let existing else { throw Problem(.serviceUnavailable, "The conversation changed meanwhile; try again.", headers: [.retryAfter: "1"]) }
        return (existing, false)
    }

    /// Writes the message, moves the conversation's activity and the recipient's unread count,
    /// puts `message.created` on both participants' streams, and takes the recipient's mail mark
    /// when the last mail about this conversation is 10 minutes old or more: one statement.
    /// Answers the message and whether the recipient is to be mailed now.
    func post(_ body: String, masked: String?, by author: UUID, in conversation: ConversationRow, in tx: Transaction) async throws
        -> (MessageView, mailNow: Bool) {
        let id = UUID.v7()
        let now = tx.now
        let recipient = conversation.other(than: author)
        let authorIsBuyer = author == conversation.buyerId
        let own = MessageView(id: id, conversationId: conversation.id, authorId: author, body: body, masked: false, state: .sent, createdAt: now)
        let hidden = masked != nil && !conversation.paid
        let seen = MessageView(id: id, conversationId: conversation.id, authorId: author, body: hidden ? masked : body, masked: hidden,
                               state: .sent, createdAt: now)
        let mailNow = try await tx.execute(PostMessage(
            id: id, conversation: conversation.id, author: author, body: body, masked: masked, now: now,
            buyerIncrement: authorIsBuyer ? 0 : 1, vendorIncrement: authorIsBuyer ? 1 : 0, recipient: recipient,
            own: try JSONWriter.string(own), seen: try JSONWriter.string(seen), mailedBefore: now.addingTimeInterval(-MessageMail.interval))).first ?? false
        return (own, mailNow)
    }

    /// A page of the conversation's messages, newest first, as `caller` sees them: their own
    /// deleted messages are gone; the other's are marked deleted; contact details are masked
    /// unless the two have a paid order.
    func messages(of conversation: ConversationRow, for caller: UUID, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<MessageView> {
        let rows = try await tx.query("""
            SELECT id, author_id, body, masked_body, deleted_at IS NOT NULL, removed_at IS NOT NULL, created_at
            FROM messages
            WHERE conversation_id = \(conversation.id) AND NOT (author_id = \(caller) AND deleted_at IS NOT NULL) AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)
        var items: [MessageView] = []
        for try await (id, author, body, maskedBody, deleted, removed, created)
            in rows.decode((UUID, UUID, String, String?, Bool, Bool, Date).self) {
            let state: MessageView.State = removed ? .removed : deleted ? .deleted : .sent
            let hide = author != caller && maskedBody != nil && !conversation.paid
            items.append(MessageView(id: id, conversationId: conversation.id, authorId: author,
                                     body: state == .sent ? (hide ? maskedBody : body) : nil, masked: state == .sent && hide,
                                     state: state, createdAt: created))
        }
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    /// Every message as it was written, for the moderation desk.
    func deskMessages(of conversation: UUID, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<DeskMessageView> {
        let rows = try await tx.query("""
            SELECT id, author_id, body, masked_body, deleted_at, removed_at, removed_by, created_at
            FROM messages WHERE conversation_id = \(conversation) AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)
        var items: [DeskMessageView] = []
        for try await (id, author, body, maskedBody, deleted, removed, removedBy, created)
            in rows.decode((UUID, UUID, String, String?, Date?, Date?, UUID?, Date).self) {
            items.append(DeskMessageView(id: id, authorId: author, body: body, maskedBody: maskedBody, deletedAt: deleted,
                                         removedAt: removed, removedBy: removedBy, createdAt: created))
        }
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    /// Marks the conversation read for `reader` up to now and tells both participants' streams.
    func markRead(_ conversation: ConversationRow, by reader: UUID, in tx: Transaction) async throws {
        let isBuyer = reader == conversation.buyerId
        let column = isBuyer ? "buyer" : "vendor"
        struct ReadMark: Encodable { var conversationId: UUID; var userId: UUID; var readAt: Date }
        let data = try JSONWriter.string(ReadMark(conversationId: conversation.id, userId: reader, readAt: tx.now))
        try await tx.query("""
            WITH marked AS (
                UPDATE conversations SET \(unescaped: column)_read_at = \(tx.now), \(unescaped: column)_unread = 0 WHERE id = \(conversation.id)
            ), streamed AS (
                INSERT INTO stream_events (user_id, type, data, created_at)
                VALUES (\(reader), 'conversation.read', \(data), \(tx.now)), (\(conversation.other(than: reader)), 'conversation.read', \(data), \(tx.now))
                RETURNING user_id, id
            )
            SELECT pg_notify(\(EventStream.channel), string_agg(user_id::text || ':' || id::text, ',')) FROM streamed
            """)
    }

    /// The message's author, if it is in this conversation.
    func author(of message: UUID, in conversation: UUID, tx: Transaction) async throws -> (author: UUID, deleted: Bool)? {
        let rows = try await tx.query("SELECT author_id, deleted_at IS NOT NULL FROM messages WHERE id = \(message) AND conversation_id = \(conversation)")
        for try await row in rows.decode((UUID, Bool).self) { return row }
        return nil
    }

    func softDelete(_ message: UUID, in tx: Transaction) async throws {
        try await tx.query("UPDATE messages SET deleted_at = \(tx.now) WHERE id = \(message) AND deleted_at IS NULL")
    }
}

// MARK: The prepared statements of every post

/// The conversation and what the policy needs (see `ConversationRepository.load`).
protocol ConversationLoading: PostgresPreparedStatement where Row == ConversationRow {
    var id: UUID { get }
}

extension ConversationLoading {
    static var select: String {
        """
        SELECT c.id, c.buyer_id, c.vendor_id, c.listing_id, c.order_id,
               ARRAY(SELECT b.blocker_id FROM blocks b
                     WHERE (b.blocker_id = c.buyer_id AND b.blocked_id = c.vendor_id)
                        OR (b.blocker_id = c.vendor_id AND b.blocked_id = c.buyer_id)),
               EXISTS (SELECT 1 FROM reports r WHERE r.conversation_id = c.id AND r.status = 'open'),
               EXISTS (SELECT 1 FROM paid_pairs p WHERE p.buyer_id = c.buyer_id AND p.vendor_id = c.vendor_id)
        FROM conversations c WHERE c.id = $1
        """
    }
    static var bindingDataTypes: [PostgresDataType] { [.uuid] }

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(id)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> ConversationRow {
        let (id, buyer, vendor, listing, order, blockers, reported, paid) = try row.decode((UUID, UUID, UUID, UUID?, UUID?, [UUID], Bool, Bool).self)
        return ConversationRow(id: id, buyerId: buyer, vendorId: vendor, listingId: listing, orderId: order,
                               blockers: Set(blockers), reported: reported, paid: paid)
    }
}

struct LoadConversation: ConversationLoading {
    static let sql = select
    var id: UUID
}

struct LoadConversationForUpdate: ConversationLoading {
    static let sql = select + " FOR UPDATE OF c"
    var id: UUID
}

/// A post in one statement (see `ConversationRepository.post`): the message, the conversation's
/// activity and the recipient's unread count, both participants' stream rows and their NOTIFY,
/// and the recipient's mail mark, taken when the last mail is older than `mailedBefore`.
/// Answers whether the recipient is to be mailed now.
struct PostMessage: PostgresPreparedStatement {
    static let sql = """
        WITH message AS (
            INSERT INTO messages (id, conversation_id, author_id, body, masked_body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
        ), touched AS (
            UPDATE conversations SET last_message_at = $6, last_activity_at = $6, last_message_id = $1,
                   buyer_unread = buyer_unread + $7, vendor_unread = vendor_unread + $8
            WHERE id = $2
        ), streamed AS (
            INSERT INTO stream_events (user_id, type, data, created_at)
            VALUES ($3, 'message.created', $10, $6), ($9, 'message.created', $11, $6)
            RETURNING user_id, id
        ), notified AS (
            SELECT pg_notify($13, string_agg(user_id::text || ':' || id::text, ',')) FROM streamed
        ), mark AS (
            INSERT INTO message_mail_marks AS m (conversation_id, user_id, last_mailed_at) VALUES ($2, $9, $6)
            ON CONFLICT (conversation_id, user_id) DO UPDATE SET last_mailed_at = EXCLUDED.last_mailed_at
            WHERE m.last_mailed_at <= $12
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM mark) FROM notified
        """
    static let bindingDataTypes: [PostgresDataType] = [.uuid, .uuid, .uuid, .text, .text, .timestamptz, .int4, .int4, .uuid,
                                                       .text, .text, .timestamptz, .text]
    typealias Row = Bool

    var id: UUID
    var conversation: UUID
    var author: UUID
    var body: String
    var masked: String?
    var now: Date
    var buyerIncrement: Int32
    var vendorIncrement: Int32
    var recipient: UUID
    var own: String
    var seen: String
    var mailedBefore: Date

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 13)
        bindings.append(id)
        bindings.append(conversation)
        bindings.append(author)
        bindings.append(body)
        bindings.append(masked)
        bindings.append(now)
        bindings.append(buyerIncrement)
        bindings.append(vendorIncrement)
        bindings.append(recipient)
        bindings.append(own)
        bindings.append(seen)
        bindings.append(mailedBefore)
        bindings.append(EventStream.channel)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Bool { try row.decode(Bool.self) }
}
