import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The listings service: categories with attribute schemas (and, as the product grows, listings,
/// moderation and search). Owns the `listings` schema.
public struct ListingsService: ServiceModule {
    public static let name = "listings"
    public static let defaultPort = 8082
    public static let consumedTopics = [Topics.identityUsers]

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let categories: CategoryRepository

    public init(dependencies: ServiceDependencies) throws {
        self.categories = CategoryRepository(client: dependencies.postgres)
    }

    public func addRoutes(to router: ServiceRouter) {
        CategoriesController(repository: categories).addRoutes(to: router)
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        UsersProjection.participate(as: Self.name, into: &handlers)
        return handlers
    }
}

/// A category of listings; `attributeSchema` is the JSON Schema listing attributes must satisfy.
public struct Category: Sendable, Encodable {
    public var id: UUID
    public var slug: String
    public var name: String
    public var parentId: UUID?
    public var attributeSchema: JSONValue
}

struct CategoryRepository: Sendable {
    let client: PostgresClient

    /// All categories; the tree is small (tens of rows), so it is read whole, in display order.
    func all(_ context: OperationContext) async throws -> [Category] {
        let rows = try await client.query(
            "SELECT id, slug, name, parent_id, attribute_schema::text FROM categories ORDER BY position, slug LIMIT 1000",
            logger: context.logger)
        var result: [Category] = []
        for try await (id, slug, name, parentId, schema) in rows.decode((UUID, String, String, UUID?, String).self) {
            result.append(Category(id: id, slug: slug, name: name, parentId: parentId, attributeSchema: try JSONValue(json: schema)))
        }
        return result
    }
}

struct CategoriesController: Sendable {
    let repository: CategoryRepository

    func addRoutes(to router: ServiceRouter) {
        router.get("/v1/categories") { request, context -> Response in
            try JSONResponse.cacheable(Page(items: try await repository.all(context.operation), nextCursor: nil), request: request)
        }
    }
}
