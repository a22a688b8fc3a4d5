import Foundation
import Platform
import PostgresNIO

/// A review as orders stores it.
struct ReviewRecord: Sendable, Equatable {
    var id: UUID
    var orderId: UUID
    var authorId: UUID
    var subjectId: UUID
    var authorRole: ReviewRole
    var rating: Int
    var text: String
    var status: ReviewStatus
    var reply: String?
    var repliedAt: Date?
    var removedReason: String?
    var removedBy: UUID?
    var version: Int
    var createdAt: Date
    var publishedAt: Date?
    var updatedAt: Date
}

/// A review as the API shows it. `authorName` is the author's display name (as orders' users
/// projection knows it).
struct ReviewView: Sendable, Codable, Equatable {
    struct Reply: Sendable, Codable, Equatable {
        var text: String
        var repliedAt: Date
    }

    var id: UUID
    var orderId: UUID
    var authorId: UUID
    var authorName: String
    var subjectId: UUID
    var authorRole: String
    var rating: Int
    var text: String
    var status: String
    var reply: Reply?
    /// Only for the author and staff, once removed.
    var removedReason: String?
    var version: Int
    var createdAt: Date
    var publishedAt: Date?

    init(_ r: ReviewRecord, authorName: String) {
        id = r.id
        orderId = r.orderId
        authorId = r.authorId
        self.authorName = authorName
        subjectId = r.subjectId
        authorRole = r.authorRole.rawValue
        rating = r.rating
        text = r.text
        status = r.status.rawValue
        reply = r.reply.flatMap { text in r.repliedAt.map { Reply(text: text, repliedAt: $0) } }
        removedReason = r.removedReason
        version = r.version
        createdAt = r.createdAt
        publishedAt = r.publishedAt
    }
}

/// A vendor's public reviews with the summary (`GET /v1/vendors/{id}/reviews`).
struct VendorReviewsPage: Sendable, Codable, Equatable {
    struct Summary: Sendable, Codable, Equatable {
        /// Two decimals; null before the first review.
        var average: Double?
        var count: Int
    }

    var items: [ReviewView]
    var nextCursor: String?
    var summary: Summary
}

/// Reviews' rows and each vendor's rating.
struct ReviewRepository: Sendable {
    static let columns = """
        r.id, r.order_id, r.author_id, r.subject_id, r.author_role, r.rating, r.body, r.status, r.reply, r.replied_at, r.removed_reason,
        r.removed_by, r.version, r.created_at, r.published_at, r.updated_at, coalesce(u.display_name, '')
        """
    static let newestFirst = KeysetOrder([.init("r.published_at", .time, descending: true)], idColumn: "r.id", idDescending: true)
    static func binding(_ vendor: UUID) -> String { KeysetCursor.binding("vendor.reviews", sort: "newest", filters: [("vendor", vendor.lowercased)]) }

    func insert(_ r: ReviewRecord, in tx: Transaction) async throws -> Bool {
        let rows = try await tx.query("""
            INSERT INTO reviews (id, order_id, author_id, subject_id, author_role, rating, body, status, version, created_at, updated_at)
            VALUES (\(r.id), \(r.orderId), \(r.authorId), \(r.subjectId), \(r.authorRole.rawValue), \(Int16(r.rating)), \(r.text),
                    \(r.status.rawValue), \(r.version), \(r.createdAt), \(r.updatedAt))
            ON CONFLICT (order_id, author_role) DO NOTHING
            RETURNING id
            """)
        for try await _ in rows { return true }
        return false
    }

    func load(_ id: UUID, lock: Bool = false, in tx: Transaction) async throws -> (ReviewRecord, String)? {
        try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM reviews r LEFT JOIN users u ON u.id = r.author_id
            WHERE r.id = \(id) \(unescaped: lock ? "FOR UPDATE OF r" : "")
            """)).first
    }

    /// The order's reviews (at most two), locked.
    func of(order: UUID, in tx: Transaction) async throws -> [(ReviewRecord, String)] {
        try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM reviews r LEFT JOIN users u ON u.id = r.author_id
            WHERE r.order_id = \(order) ORDER BY r.author_role FOR UPDATE OF r
            """))
    }

    func update(_ r: ReviewRecord, in tx: Transaction) async throws -> ReviewRecord {
        var updated = r
        updated.version = r.version + 1
        updated.updatedAt = tx.now
        try await tx.query("""
            UPDATE reviews SET status = \(r.status.rawValue), reply = \(r.reply), replied_at = \(r.repliedAt), removed_reason = \(r.removedReason),
                removed_by = \(r.removedBy), published_at = \(r.publishedAt), version = \(updated.version), updated_at = \(updated.updatedAt)
            WHERE id = \(r.id)
            """)
        return updated
    }

    /// Adds (or, removed, takes away) a published rating of the vendor; answers the new sum,
    /// count and version.
    func rate(vendor: UUID, add rating: Int, count delta: Int, in tx: Transaction) async throws -> (sum: Int64, count: Int, version: Int64) {
        let rows = try await tx.query("""
            INSERT INTO vendor_ratings (vendor_id, rating_sum, rating_count, version, updated_at)
            VALUES (\(vendor), \(Int64(rating)), \(delta), 1, \(tx.now))
            ON CONFLICT (vendor_id) DO UPDATE SET rating_sum = vendor_ratings.rating_sum + EXCLUDED.rating_sum,
                rating_count = vendor_ratings.rating_count + EXCLUDED.rating_count, version = vendor_ratings.version + 1,
                updated_at = EXCLUDED.updated_at
            RETURNING rating_sum, rating_count, version
            """)
        for try await (sum, count, version) in rows.decode((Int64, Int32, Int64).self) { return (sum, Int(count), version) }
        throw ReviewsError.reviewNotFound
    }

    func summary(of vendor: UUID, in tx: Transaction) async throws -> VendorReviewsPage.Summary {
        let rows = try await tx.query("SELECT rating_sum, rating_count FROM vendor_ratings WHERE vendor_id = \(vendor)")
        for try await (sum, count) in rows.decode((Int64, Int32).self) where count > 0 {
            return .init(average: (Double(sum) / Double(count) * 100).rounded() / 100, count: Int(count))
        }
        return .init(average: nil, count: 0)
    }

    /// The vendor's published reviews by buyers, newest first (`reviews_of_vendor`).
    func page(vendor: UUID, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<ReviewView> {
        let items = try await Self.decode(tx.query("""
            SELECT \(unescaped: Self.columns) FROM reviews r LEFT JOIN users u ON u.id = r.author_id
            WHERE r.subject_id = \(vendor) AND r.author_role = 'buyer' AND r.status = 'published' AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)).map { ReviewView($0.0, authorName: $0.1) }
        return page.page(items) { KeysetCursor(values: [.time($0.publishedAt ?? $0.createdAt)], id: $0.id) }
    }

    static func decode(_ rows: PostgresRowSequence) async throws -> [(ReviewRecord, String)] {
        var result: [(ReviewRecord, String)] = []
        for try await row in rows {
            let c = row.makeRandomAccess()
            let role = try c[4].decode(String.self), status = try c[7].decode(String.self)
            guard let authorRole = ReviewRole(rawValue: role) else { throw OrdersStoreError.unknownStatus(role) }
            guard let reviewStatus = ReviewStatus(rawValue: status) else { throw OrdersStoreError.unknownStatus(status) }
            result.append((ReviewRecord(
                id: try c[0].decode(UUID.self), orderId: try c[1].decode(UUID.self), authorId: try c[2].decode(UUID.self),
                subjectId: try c[3].decode(UUID.self), authorRole: authorRole, rating: Int(try c[5].decode(Int16.self)), text: try c[6].decode(String.self),
                status: reviewStatus, reply: try c[8].decode(String?.self), repliedAt: try c[9].decode(Date?.self),
                removedReason: try c[10].decode(String?.self), removedBy: try c[11].decode(UUID?.self), version: Int(try c[12].decode(Int32.self)),
                createdAt: try c[13].decode(Date.self), publishedAt: try c[14].decode(Date?.self), updatedAt: try c[15].decode(Date.self)),
                try c[16].decode(String.self)))
        }
        return result
    }
}
