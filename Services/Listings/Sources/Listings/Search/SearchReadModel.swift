import Contracts
import Foundation
import Logging
import NIOConcurrencyHelpers
import Platform
import PostgresNIO
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Many readers or one writer: searches run side by side; applying a change waits for them.
final class ReadersWriterLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() { pthread_rwlock_init(lock, nil) }
    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func read<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func write<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

/// This replica's search read model: every visible listing in a `SearchIndex`, loaded from
/// Postgres at start and kept current by the `listings_changed` notifications each committed
/// change sends (`ListingChanges`), so every replica hears every change, whoever made it.
/// Also the replica's cache of public answers, dropped whenever a change is applied.
final class SearchReadModel: Service, @unchecked Sendable {
    private let client: PostgresClient
    private let catalog: CategoryCatalog
    private let logger: Logger
    private let lock = ReadersWriterLock()
    private var index: SearchIndex?
    /// Moves on every applied change; a cached answer from an older generation is never served.
    private var generation: UInt64 = 0
    private let pending = NIOLockedValueBox(PendingChanges())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    let cache: AnswerCache
    /// Buffers for searches, reused instead of allocated per request.
    private let scratches = NIOLockedValueBox<[SearchScratch]>([])
    /// How long a burst of changes is gathered before it is applied (well under the one second promised).
    static let coalescing: Duration = .milliseconds(20)

    struct PendingChanges {
        var listings: Set<UUID> = []
        var vendors: Set<UUID> = []
        var everything = false
    }

    init(client: PostgresClient, catalog: CategoryCatalog, cacheEntries: Int, logger: Logger) {
        self.client = client
        self.cache = AnswerCache(capacity: cacheEntries)
        self.catalog = catalog
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    var isLoaded: Bool { lock.read { index != nil } }
    var currentGeneration: UInt64 { lock.read { generation } }

    /// Runs `query` against the index; nil until the first load has finished.
    func search(_ query: SearchQuery) -> (SearchResult, UInt64)? {
        let scratch = scratches.withLockedValue { $0.popLast() } ?? SearchScratch()
        defer { scratches.withLockedValue { if $0.count < 8 { $0.append(scratch) } } }
        return lock.read {
            guard let index else { return nil }
            return (index.search(query, scratch: scratch), generation)
        }
    }

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.listen() }
            group.addTask { await self.applyChanges() }
            try await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Listens, then loads: whatever changes during the load is queued and applied after it.
    /// A lost connection may have lost notifications, so a reconnect reloads everything.
    private func listen() async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try Database.checkOpen(connection)
                    return try await connection.listen(on: ListingChanges.channel) { notifications in
                        self.note(everything: true)
                        for try await notification in notifications { self.note(notification.payload) }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("search change listener interrupted", metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func note(_ payload: String) {
        pending.withLockedValue { changes in
            if payload == "*" { changes.everything = true }
            else if payload.hasPrefix("listing:"), let id = UUID(uuidString: String(payload.dropFirst(8))) { changes.listings.insert(id) }
            else if payload.hasPrefix("vendor:"), let id = UUID(uuidString: String(payload.dropFirst(7))) { changes.vendors.insert(id) }
        }
        wake.yield()
    }

    private func note(everything: Bool) {
        pending.withLockedValue { $0.everything = true }
        wake.yield()
    }

    private func applyChanges() async {
        for await _ in wakeups {
            try? await Task.sleep(for: Self.coalescing)
            let changes = pending.withLockedValue { changes in
                defer { changes = PendingChanges() }
                return changes
            }
            do {
                if changes.everything || !isLoaded {
                    try await loadEverything()
                } else if !changes.listings.isEmpty || !changes.vendors.isEmpty {
                    try await reload(listings: changes.listings, vendors: changes.vendors)
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("search read model update failed; retrying", metadata: ["error": "\(String(reflecting: error))"])
                pending.withLockedValue { queued in
                    queued.everything = queued.everything || changes.everything
                    queued.listings.formUnion(changes.listings)
                    queued.vendors.formUnion(changes.vendors)
                }
                try? await Task.sleep(for: .seconds(1))
                wake.yield()
            }
        }
    }

    // MARK: Loading

    private static let documentColumns = """
        l.id, l.vendor_id, l.category_id, l.title, l.description, l.attributes::text, l.price_amount, l.currency,
        coalesce(l.published_at, l.updated_at), l.lat, l.lon, l.city, l.country, l.media->0->>'url',
        l.status = 'published' AND l.hidden_reason IS NULL
        """

    private static func document(_ row: PostgresRow) throws -> (SearchDocument, Bool) {
        let (id, vendor, category, title, description, attributes, price, currency, published, lat, lon, city, country, image, visible)
            = try row.decode((UUID, UUID, UUID, String, String, String, Int64, String, Date, Double, Double, String, String, String?, Bool).self)
        return (SearchDocument(id: id, vendorId: vendor, categoryId: category, title: title, description: description,
                               attributesJSON: attributes, priceAmount: price, currency: currency, publishedAt: published,
                               lat: lat, lon: lon, city: city, country: country, image: image), visible)
    }

    /// Builds a whole new index beside the one serving, then swaps it in.
    func loadEverything() async throws {
        let started = ContinuousClock.now
        let context = OperationContext.background(service: ListingsService.name, logger: logger, clock: BusinessClock())
        var fresh = SearchIndex(categories: try await catalog.tree(context))
        for (id, vendor) in try await vendors(nil) { fresh.setVendor(id, vendor) }
        let rows = try await client.query("""
            SELECT \(unescaped: Self.documentColumns) FROM listings l WHERE l.status = 'published' AND l.hidden_reason IS NULL
            """, logger: logger)
        fresh.beginLoading()
        for try await row in rows {
            let (document, _) = try Self.document(row)
            fresh.upsert(document)
        }
        fresh.finishLoading()
        let count = fresh.count
        lock.write {
            index = fresh
            generation &+= 1
        }
        logger.info("search read model loaded", metadata: [
            "listings": "\(count)", "duration.ms": "\((ContinuousClock.now - started).components.seconds * 1000 + (ContinuousClock.now - started).components.attoseconds / 1_000_000_000_000_000)",
        ])
    }

    /// Re-reads the changed listings and vendors and applies them under the write lock.
    private func reload(listings: Set<UUID>, vendors vendorIds: Set<UUID>) async throws {
        let listingIds = Array(listings), vendorList = Array(vendorIds)
        let rows = try await client.query("""
            SELECT \(unescaped: Self.documentColumns) FROM listings l
            WHERE l.id = ANY(\(listingIds)) OR l.vendor_id = ANY(\(vendorList))
            """, logger: logger)
        var documents: [(SearchDocument, Bool)] = []
        for try await row in rows { documents.append(try Self.document(row)) }
        let vendorInfo = vendorIds.isEmpty ? [] : try await vendors(vendorList)
        let seen = Set(documents.map(\.0.id))
        lock.write {
            guard var current = index else { return }
            index = nil  // the index is uniquely referenced while it changes (no copy of a million slots)
            for (id, vendor) in vendorInfo { current.setVendor(id, vendor) }
            for vendor in vendorIds { for id in current.listings(of: vendor) where !seen.contains(id) { current.remove(id) } }
            for id in listings where !seen.contains(id) { current.remove(id) }
            for (document, visible) in documents {
                if visible { current.upsert(document) } else { current.remove(document.id) }
            }
            if current.needsCompaction { current = current.compacted() }
            index = current
            generation &+= 1
        }
        logger.debug("search read model updated", metadata: ["listings": "\(documents.count)", "vendors": "\(vendorIds.count)"])
    }

    /// Vendors as search shows them: every vendor in the projections (one pass over both tables),
    /// or the ones listed (by primary keys: the users projection holds every buyer too).
    private func vendors(_ ids: [UUID]?) async throws -> [(UUID, SearchVendor)] {
        let rows = if let ids {
            try await client.query("""
                SELECT u.id, u.display_name, v.rating_average::float8
                FROM users u LEFT JOIN vendors v ON v.id = u.id
                WHERE u.id = ANY(\(ids)) AND (v.id IS NOT NULL OR 'vendor' = ANY(u.roles))
                UNION ALL
                SELECT v.id, '', v.rating_average::float8 FROM vendors v
                WHERE v.id = ANY(\(ids)) AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = v.id)
                """, logger: logger)
        } else {
            try await client.query("""
                SELECT coalesce(u.id, v.id), coalesce(u.display_name, ''), v.rating_average::float8
                FROM users u FULL JOIN vendors v ON v.id = u.id
                WHERE v.id IS NOT NULL OR 'vendor' = ANY(u.roles)
                """, logger: logger)
        }
        var result: [(UUID, SearchVendor)] = []
        for try await (id, name, rating) in rows.decode((UUID, String, Double?).self) {
            result.append((id, SearchVendor(displayName: name, rating: rating.map { ($0 * 100).rounded() / 100 })))
        }
        return result
    }
}

/// Encoded public answers of this replica, each tagged with the read model's generation it was
/// computed at; a change moves the generation, so nothing stale is ever served.
final class AnswerCache: Sendable {
    struct Answer: Sendable {
        var body: [UInt8]
        var etag: String
        var generation: UInt64
    }

    private let capacity: Int
    private let answers = NIOLockedValueBox<[String: Answer]>([:])

    init(capacity: Int) { self.capacity = capacity }

    func answer(_ key: String, generation: UInt64) -> Answer? {
        answers.withLockedValue { $0[key] }.flatMap { $0.generation == generation ? $0 : nil }
    }

    func store(_ key: String, _ answer: Answer) {
        guard capacity > 0 else { return }
        answers.withLockedValue { answers in
            // Bounded: when full, everything goes (entries of old generations are dead weight anyway).
            if answers.count >= capacity { answers.removeAll(keepingCapacity: true) }
            answers[key] = answer
        }
    }
}
