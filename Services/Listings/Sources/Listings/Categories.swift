import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import Platform
import PostgresNIO

/// A category of listings; `attributeSchema` is the JSON Schema listing attributes must satisfy.
public struct Category: Sendable, Encodable {
    public var id: UUID
    public var slug: String
    public var name: String
    public var parentId: UUID?
    /// The parent's slug, null at the top of the tree.
    public var parent: String?
    public var attributeSchema: JSONValue
    /// The attributes search counts values of (`facets=attr.<name>`).
    public var facetAttributes: [String]
    /// Listings in it are reviewed by a moderator before they are published.
    public var requiresReview: Bool
}

/// The category tree with each schema compiled once. Categories change only with a migration, so
/// the tree is read once per process.
struct CategoryTree: Sendable {
    let categories: [Category]
    let schemas: [UUID: JSONSchema]
    private let bySlug: [String: Int]
    private let byId: [UUID: Int]

    init(_ categories: [Category]) throws {
        self.categories = categories
        var schemas: [UUID: JSONSchema] = [:]
        for category in categories { schemas[category.id] = try JSONSchema(category.attributeSchema) }
        self.schemas = schemas
        bySlug = Dictionary(uniqueKeysWithValues: categories.enumerated().map { ($1.slug, $0) })
        byId = Dictionary(uniqueKeysWithValues: categories.enumerated().map { ($1.id, $0) })
    }

    func category(slug: String) -> Category? { bySlug[slug].map { categories[$0] } }
    func category(id: UUID) -> Category? { byId[id].map { categories[$0] } }

    /// The category and every category below it.
    func subtree(of id: UUID) -> Set<UUID> {
        var result: Set<UUID> = [id]
        var frontier = [id]
        while let next = frontier.popLast() {
            for child in categories where child.parentId == next && !result.contains(child.id) {
                result.insert(child.id)
                frontier.append(child.id)
            }
        }
        return result
    }
}

/// Reads the tree on first use and keeps it.
final class CategoryCatalog: Sendable {
    private let client: PostgresClient
    private let loaded = NIOLockedValueBox<CategoryTree?>(nil)

    init(client: PostgresClient) { self.client = client }

    func tree(_ context: OperationContext) async throws -> CategoryTree {
        if let tree = loaded.withLockedValue({ $0 }) { return tree }
        let rows = try await client.query("""
            SELECT c.id, c.slug, c.name, c.parent_id, p.slug, c.attribute_schema::text, c.facet_attributes, c.requires_review
            FROM categories c LEFT JOIN categories p ON p.id = c.parent_id
            ORDER BY c.position, c.slug LIMIT 1000
            """, logger: context.logger)
        var categories: [Category] = []
        for try await (id, slug, name, parentId, parent, schema, facets, review)
            in rows.decode((UUID, String, String, UUID?, String?, String, [String], Bool).self) {
            categories.append(Category(id: id, slug: slug, name: name, parentId: parentId, parent: parent,
                                       attributeSchema: try JSONValue(json: schema), facetAttributes: facets, requiresReview: review))
        }
        let tree = try CategoryTree(categories)
        loaded.withLockedValue { $0 = tree }
        return tree
    }
}

struct CategoriesController: Sendable {
    let catalog: CategoryCatalog

    func addRoutes(to router: ServiceRouter) {
        router.get("/v1/categories") { request, context -> Response in
            let tree = try await catalog.tree(context.operation)
            return try JSONResponse.cacheable(Page(items: tree.categories, nextCursor: nil), request: request)
        }
        router.get("/v1/categories/{slug}") { request, context -> Response in
            let slug = try context.parameters.require("slug")
            guard let category = try await catalog.tree(context.operation).category(slug: slug) else {
                throw ListingsError.categoryNotFound
            }
            return try JSONResponse.cacheable(category, request: request)
        }
    }
}
