import Foundation
import Platform
import PostgresNIO

/// Listings as rows: SQL written as SQL, every value bound. Writes take the transaction they
/// belong to; reads outside one take the pooled client.
struct ListingRepository: Sendable {
    let client: PostgresClient

    /// The columns `decode` reads, with the category slug and the vendor as buyers see it.
    private static let columns = """
        l.id, l.vendor_id, l.category_id, c.slug, l.status, l.hidden_reason, l.title, l.description, l.attributes::text,
        l.price_amount, l.currency, l.quantity, l.quantity_available, l.lat, l.lon, l.city, l.region, l.country, l.media::text,
        l.rejection_reason, l.version, l.created_at, l.updated_at, l.submitted_at, l.published_at, l.first_published_at,
        coalesce(u.display_name, ''), v.business_name, v.rating_average::float8, coalesce(v.rating_count, 0)
        """
    private static let joins = """
        JOIN categories c ON c.id = l.category_id
        LEFT JOIN users u ON u.id = l.vendor_id
        LEFT JOIN vendors v ON v.id = l.vendor_id
        """

    static func decode(_ row: PostgresRow) throws -> ListingRecord {
        let cells = row.makeRandomAccess()
        func value<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try cells[index].decode(T.self) }
        let vendorId = try value(1, UUID.self)
        let status = try value(4, String.self)
        return ListingRecord(
            id: try value(0, UUID.self), vendorId: vendorId, categoryId: try value(2, UUID.self), categorySlug: try value(3, String.self),
            status: ListingStatus(rawValue: status) ?? .draft, hiddenReason: try value(5, String?.self),
            title: try value(6, String.self), description: try value(7, String.self),
            attributes: try JSONValue(json: try value(8, String.self)),
            price: try Money(amount: try value(9, Int64.self), currencyCode: try value(10, String.self)),
            quantity: try value(11, Int.self), quantityAvailable: try value(12, Int.self),
            location: Location(lat: try value(13, Double.self), lon: try value(14, Double.self), city: try value(15, String.self),
                               region: try value(16, String?.self), country: try value(17, String.self)),
            media: try JSONDecoder().decode([Media].self, from: Data(try value(18, String.self).utf8)),
            rejectionReason: try value(19, String?.self), version: try value(20, Int.self),
            createdAt: try value(21, Date.self), updatedAt: try value(22, Date.self), submittedAt: try value(23, Date?.self),
            publishedAt: try value(24, Date?.self), firstPublishedAt: try value(25, Date?.self),
            vendor: VendorView(id: vendorId, displayName: try value(26, String.self), businessName: try value(27, String?.self),
                               rating: try value(28, Double?.self).map { ($0 * 100).rounded() / 100 }, ratingCount: try value(29, Int.self)))
    }

    func find(_ id: UUID, _ context: OperationContext) async throws -> ListingRecord? {
        let rows = try await client.query("SELECT \(unescaped: Self.columns) FROM listings l \(unescaped: Self.joins) WHERE l.id = \(id)",
                                          logger: context.logger)
        for try await row in rows { return try Self.decode(row) }
        return nil
    }

    /// The listing, its row locked until the transaction ends (every state change starts here).
    func lock(_ id: UUID, in transaction: Transaction) async throws -> ListingRecord? {
        let rows = try await transaction.query("""
            SELECT \(unescaped: Self.columns) FROM listings l \(unescaped: Self.joins) WHERE l.id = \(id) FOR UPDATE OF l
            """)
        for try await row in rows { return try Self.decode(row) }
        return nil
    }

    func reload(_ id: UUID, in transaction: Transaction) async throws -> ListingRecord {
        let rows = try await transaction.query("SELECT \(unescaped: Self.columns) FROM listings l \(unescaped: Self.joins) WHERE l.id = \(id)")
        for try await row in rows { return try Self.decode(row) }
        throw ListingsError.listingNotFound
    }

    func insert(id: UUID, vendor: UUID, _ content: ListingContent, in transaction: Transaction) async throws {
        let now = transaction.now
        try await transaction.query("""
            INSERT INTO listings (id, vendor_id, category_id, status, title, description, attributes, price_amount, currency,
                                  quantity, quantity_available, lat, lon, city, region, country, media, created_at, updated_at)
            VALUES (\(id), \(vendor), \(content.category.id), 'draft', \(content.title), \(content.description),
                    \(try JSONWriter.string(content.attributes))::jsonb, \(content.price.amount), \(content.price.currency.code),
                    \(content.quantity), \(content.quantity), \(content.location.lat), \(content.location.lon), \(content.location.city),
                    \(content.location.region), \(content.location.country), \(try JSONWriter.string(content.media))::jsonb, \(now), \(now))
            """)
    }

    /// Writes the edited fields and the new status (one version up) if nobody changed the row since
    /// `record` was read; false when someone did.
    func saveEdit(_ record: ListingRecord, _ content: ListingContent, status: ListingStatus, available: Int,
                  in transaction: Transaction) async throws -> Bool {
        let saved = try await transaction.first("""
            UPDATE listings SET category_id = \(content.category.id), title = \(content.title), description = \(content.description),
                attributes = \(try JSONWriter.string(content.attributes))::jsonb, price_amount = \(content.price.amount),
                currency = \(content.price.currency.code), quantity = \(content.quantity), quantity_available = \(available),
                lat = \(content.location.lat), lon = \(content.location.lon), city = \(content.location.city),
                region = \(content.location.region), country = \(content.location.country),
                media = \(try JSONWriter.string(content.media))::jsonb, status = \(status.rawValue),
                submitted_at = CASE WHEN \(status.rawValue) = 'pending_review' AND status <> 'pending_review' THEN \(transaction.now) ELSE submitted_at END,
                version = version + 1, updated_at = \(transaction.now)
            WHERE id = \(record.id) AND version = \(record.version)
            RETURNING version
            """, as: Int.self)
        return saved != nil
    }

    /// Moves the listing to `status`, stamping the times that status records.
    func setStatus(_ id: UUID, to status: ListingStatus, rejectionReason: String? = nil, in transaction: Transaction) async throws {
        let now = transaction.now
        try await transaction.query("""
            UPDATE listings SET status = \(status.rawValue), version = version + 1, updated_at = \(now),
                rejection_reason = \(rejectionReason),
                submitted_at = CASE WHEN \(status.rawValue) = 'pending_review' THEN \(now) ELSE submitted_at END,
                published_at = CASE WHEN \(status.rawValue) = 'published' AND status NOT IN ('published', 'sold') THEN \(now) ELSE published_at END,
                first_published_at = CASE WHEN \(status.rawValue) = 'published' THEN coalesce(first_published_at, \(now)) ELSE first_published_at END
            WHERE id = \(id)
            """)
    }

    func delete(_ id: UUID, in transaction: Transaction) async throws {
        try await transaction.query("DELETE FROM listings WHERE id = \(id)")
    }

    /// Listings that count against the vendor's quota (published and pending review).
    func quotaUsage(vendor: UUID, in transaction: Transaction) async throws -> Int {
        try await transaction.first("""
            SELECT count(*)::int FROM listings WHERE vendor_id = \(vendor) AND status IN ('published', 'pending_review')
            """, as: Int.self) ?? 0
    }

    /// How many of the vendor's listings have ever been published (its first ones go through review).
    func everPublished(vendor: UUID, in transaction: Transaction) async throws -> Int {
        try await transaction.first("""
            SELECT count(*)::int FROM listings WHERE vendor_id = \(vendor) AND first_published_at IS NOT NULL
            """, as: Int.self) ?? 0
    }

    // MARK: Lists

    static let newestFirst = KeysetOrder([.init("l.created_at", .time, descending: true)], idColumn: "l.id", idDescending: true)
    static let oldestSubmittedFirst = KeysetOrder([.init("l.submitted_at", .time, descending: false)], idColumn: "l.id", idDescending: false)

    private static let summaryColumns = """
        l.id, l.vendor_id, c.slug, l.title, l.price_amount, l.currency, l.quantity, l.quantity_available, l.status, l.hidden_reason,
        l.rejection_reason, l.version, l.created_at, l.updated_at, l.submitted_at, l.published_at
        """

    /// The vendor's listings in every status (or one), newest first.
    func vendorPage(vendor: UUID, status: ListingStatus?, _ page: KeysetPageRequest, _ context: OperationContext) async throws -> Page<ListingSummary> {
        let rows = try await client.query("""
            SELECT \(unescaped: Self.summaryColumns) FROM listings l JOIN categories c ON c.id = l.category_id
            WHERE l.vendor_id = \(vendor) AND (\(status?.rawValue)::text IS NULL OR l.status = \(status?.rawValue)) AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """, logger: context.logger)
        let items = try await Self.summaries(rows)
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    /// The review queue, oldest submission first.
    func reviewQueue(_ page: KeysetPageRequest, _ context: OperationContext) async throws -> Page<ListingSummary> {
        let rows = try await client.query("""
            SELECT \(unescaped: Self.summaryColumns) FROM listings l JOIN categories c ON c.id = l.category_id
            WHERE l.status = 'pending_review' AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """, logger: context.logger)
        let items = try await Self.summaries(rows)
        return page.page(items) { KeysetCursor(values: [.time($0.submittedAt ?? $0.createdAt)], id: $0.id) }
    }

    private static func summaries(_ rows: PostgresRowSequence) async throws -> [ListingSummary] {
        var items: [ListingSummary] = []
        for try await row in rows {
            let cells = row.makeRandomAccess()
            func value<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try cells[index].decode(T.self) }
            items.append(ListingSummary(
                id: try value(0, UUID.self), vendorId: try value(1, UUID.self), category: try value(2, String.self),
                title: try value(3, String.self), price: try Money(amount: try value(4, Int64.self), currencyCode: try value(5, String.self)),
                quantity: try value(6, Int.self), quantityAvailable: try value(7, Int.self), status: try value(8, String.self),
                hiddenReason: try value(9, String?.self), rejectionReason: try value(10, String?.self), version: try value(11, Int.self),
                createdAt: try value(12, Date.self), updatedAt: try value(13, Date.self), submittedAt: try value(14, Date?.self),
                publishedAt: try value(15, Date?.self)))
        }
        return items
    }
}
