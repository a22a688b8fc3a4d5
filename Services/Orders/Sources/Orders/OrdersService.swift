import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The orders service: the order state machine, disputes and reviews as the product grows.
/// Owns the `orders` schema.
public struct OrdersService: ServiceModule {
    public static let name = "orders"
    public static let defaultPort = 8084
    public static let consumedTopics = [Topics.identityUsers, Topics.listingsListings, Topics.billingEntitlements]
    /// The most orders one data export lists (the newest).
    static let exportLimit = 1000

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let orders: OrderRepository

    public init(dependencies: ServiceDependencies) throws {
        self.orders = OrderRepository(client: dependencies.postgres)
    }

    public func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        signedIn.get("/v1/orders") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let page = try await orders.page(participant: caller.userId, KeysetPageRequest(request, order: OrderRepository.newestFirst,
                                                                                           binding: OrderRepository.binding), context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        ListingSnapshots.register(into: &handlers)
        VendorCommissions.register(into: &handlers)
        // Orders keep the buyer's and vendor's ids (money records must stay); the projected name goes.
        PrivacyParticipant.register(
            service: Self.name,
            export: { user, transaction in
                let profile = try await UsersProjection.exportJSON(user, in: transaction)
                let orders = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', o.id, 'buyerId', o.buyer_id, 'vendorId', o.vendor_id, 'status', o.status,
                                                               'totalAmount', o.total_amount, 'currency', o.currency, 'createdAt', o.created_at)
                                             ORDER BY o.created_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM orders WHERE buyer_id = \(user) OR vendor_id = \(user)
                          ORDER BY created_at DESC LIMIT \(Self.exportLimit)) o
                    """, as: String.self) ?? "[]"
                return "{\"profile\":\(profile),\"orders\":\(orders)}"
            },
            erase: { user, transaction in try await UsersProjection.erase(user, in: transaction) },
            into: &handlers)
        return handlers
    }
}

/// An order as its buyer and vendor see it.
public struct Order: Sendable, Codable, Equatable {
    public var id: UUID
    public var buyerId: UUID
    public var vendorId: UUID
    public var status: String
    public var totalAmount: Int64
    public var currency: String
    public var createdAt: Date
}

struct OrderRepository: Sendable {
    let client: PostgresClient

    /// Newest first; a cursor of this list is refused by any other.
    static let newestFirst = KeysetOrder([.init("created_at", .time, descending: true)], idColumn: "id", idDescending: true)
    static let binding = KeysetCursor.binding("orders.mine", sort: "newest")

    /// The caller's orders as buyer or vendor, newest first. Each side is an index range scan
    /// (limit + 1 rows), merged; the extra row tells whether another page exists.
    func page(participant: UUID, _ page: KeysetPageRequest, _ context: OperationContext) async throws -> Page<Order> {
        let rows = try await client.query("""
            SELECT id, buyer_id, vendor_id, status, total_amount, currency, created_at FROM (
                (SELECT * FROM orders WHERE buyer_id = \(participant) AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
                UNION
                (SELECT * FROM orders WHERE vendor_id = \(participant) AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
            ) mine ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """, logger: context.logger)
        var items: [Order] = []
        for try await (id, buyer, vendor, status, total, currency, created)
            in rows.decode((UUID, UUID, UUID, String, Int64, String, Date).self) {
            items.append(Order(id: id, buyerId: buyer, vendorId: vendor, status: status, totalAmount: total, currency: currency, createdAt: created))
        }
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }
}
