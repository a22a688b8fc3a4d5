import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The messaging service: conversations between buyers and vendors (messages, reports and
/// notifications as the product grows). Owns the `messaging` schema.
public struct MessagingService: ServiceModule {
    public static let name = "messaging"
    public static let defaultPort = 8085
    public static let consumedTopics = [Topics.identityUsers]
    /// The most conversations one data export lists (the newest).
    static let exportLimit = 1000

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let conversations: ConversationRepository

    public init(dependencies: ServiceDependencies) throws {
        self.conversations = ConversationRepository(client: dependencies.postgres)
    }

    public func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.get("/v1/conversations") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let page = try await conversations.page(participant: caller.userId, KeysetPageRequest(request, order: ConversationRepository.newestFirst,
                                                                                                  binding: ConversationRepository.binding), context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        PrivacyParticipant.register(
            service: Self.name,
            export: { user, transaction in
                let profile = try await UsersProjection.exportJSON(user, in: transaction)
                let conversations = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', c.id, 'buyerId', c.buyer_id, 'vendorId', c.vendor_id,
                                                               'listingId', c.listing_id, 'orderId', c.order_id, 'createdAt', c.created_at)
                                             ORDER BY c.created_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM conversations WHERE buyer_id = \(user) OR vendor_id = \(user)
                          ORDER BY created_at DESC LIMIT \(Self.exportLimit)) c
                    """, as: String.self) ?? "[]"
                return "{\"profile\":\(profile),\"conversations\":\(conversations)}"
            },
            erase: { user, transaction in try await UsersProjection.erase(user, in: transaction) },
            into: &handlers)
        return handlers
    }
}

/// A conversation as a participant sees it.
public struct Conversation: Sendable, Codable, Equatable {
    public var id: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var listingId: UUID?
    public var orderId: UUID?
    public var lastMessageAt: Date?
    public var createdAt: Date
}

struct ConversationRepository: Sendable {
    let client: PostgresClient

    /// Newest first; a cursor of this list is refused by any other.
    static let newestFirst = KeysetOrder([.init("created_at", .time, descending: true)], idColumn: "id", idDescending: true)
    static let binding = KeysetCursor.binding("conversations.mine", sort: "newest")

    /// The caller's conversations, newest first; one index range scan per side, merged.
    func page(participant: UUID, _ page: KeysetPageRequest, _ context: OperationContext) async throws -> Page<Conversation> {
        let rows = try await client.query("""
            SELECT id, buyer_id, vendor_id, listing_id, order_id, last_message_at, created_at FROM (
                (SELECT * FROM conversations WHERE buyer_id = \(participant) AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
                UNION
                (SELECT * FROM conversations WHERE vendor_id = \(participant) AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
            ) mine ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """, logger: context.logger)
        var items: [Conversation] = []
        for try await (id, buyer, vendor, listing, order, lastMessage, created)
            in rows.decode((UUID, UUID, UUID, UUID?, UUID?, Date?, Date).self) {
            items.append(Conversation(id: id, buyerId: buyer, vendorId: vendor, listingId: listing, orderId: order,
                                      lastMessageAt: lastMessage, createdAt: created))
        }
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }
}
