import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO
import ServiceLifecycle

/// The listings service: vendors' catalogues, moderation, visibility from the vendor's
/// subscription and standing, stock for orders, and search. Owns the `listings` schema.
public struct ListingsService: ServiceModule {
    public static let name = "listings"
    public static let defaultPort = 8082
    public static let consumedTopics = [Topics.identityUsers, Topics.billingEntitlements, Topics.ordersOrders]
    /// The most listings one data export lists (the newest).
    static let exportLimit = 1000

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let catalog: CategoryCatalog
    let repository: ListingRepository
    let workflow: ListingWorkflow
    let visibility: Visibility
    let stock: StockReservations
    let readModel: SearchReadModel
    let bodyLimit: Int

    public init(dependencies: ServiceDependencies) throws {
        let client = dependencies.postgres
        catalog = CategoryCatalog(client: client)
        repository = ListingRepository(client: client)
        visibility = Visibility(repository: repository)
        workflow = ListingWorkflow(client: client, repository: repository, categories: catalog, visibility: visibility,
                                   reviewFirstListings: try dependencies.config.int("LISTINGS_REVIEW_FIRST_LISTINGS", default: 3, range: 0...100))
        stock = StockReservations(repository: repository, workflow: workflow)
        readModel = SearchReadModel(client: client, catalog: catalog,
                                    cacheEntries: try dependencies.config.int("LISTINGS_ANSWER_CACHE_ENTRIES", default: 20_000, range: 0...1_000_000),
                                    logger: dependencies.logger)
        bodyLimit = dependencies.settings.maxBodyBytes
    }

    public func addRoutes(to router: ServiceRouter) {
        CategoriesController(catalog: catalog).addRoutes(to: router)
        ListingsController(workflow: workflow, repository: repository, readModel: readModel, bodyLimit: bodyLimit).addRoutes(to: router)
    }

    public var backgroundServices: [any Service] { [readModel] }

    public var readinessChecks: [ReadinessCheck] {
        [ReadinessCheck(name: "search") { [readModel] in readModel.isLoaded }]
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        // After the projection: the account's status is already the new one.
        for contract in [UserEvents.suspended, UserEvents.reinstated] {
            handlers.on(contract) { [visibility] payload, _, tx in
                try await visibility.refresh(vendor: payload.userId, in: tx)
            }
        }
        handlers.on(UserEvents.registered) { payload, event, tx in
            guard payload.roles.contains(Role.vendor.rawValue) else { return }
            try await tx.query("""
                INSERT INTO vendors (id, business_name, updated_at) VALUES (\(payload.userId), \(payload.businessName), \(event.time))
                ON CONFLICT (id) DO UPDATE SET business_name = EXCLUDED.business_name, updated_at = EXCLUDED.updated_at
                WHERE vendors.updated_at <= EXCLUDED.updated_at
                """)
            try await ListingChanges.vendor(payload.userId, in: tx)
        }
        // Orders' reviews: the vendor's rating on every listing and in search (`minRating`).
        handlers.on(ReviewEvents.ratingChanged) { payload, event, tx in
            let average = payload.ratingCount > 0 ? Double(payload.ratingSum) / Double(payload.ratingCount) : nil
            let rows = try await tx.query("""
                INSERT INTO vendors (id, rating_average, rating_count, rating_version, updated_at)
                VALUES (\(payload.vendorId), round(\(average)::numeric, 2), \(payload.ratingCount), \(payload.version), \(event.time))
                ON CONFLICT (id) DO UPDATE SET rating_average = EXCLUDED.rating_average, rating_count = EXCLUDED.rating_count,
                    rating_version = EXCLUDED.rating_version
                WHERE vendors.rating_version < EXCLUDED.rating_version
                RETURNING id
                """)
            var applied = false
            for try await _ in rows { applied = true }
            guard applied else { return tx.logger.info("older vendor rating ignored", metadata: ["vendor.id": "\(payload.vendorId)"]) }
            try await ListingChanges.vendor(payload.vendorId, in: tx)
        }
        handlers.on(BillingEvents.entitlementChanged) { [visibility] payload, _, tx in
            guard try await Entitlement.apply(payload, in: tx) else {
                tx.logger.info("older entitlement ignored", metadata: ["vendor.id": "\(payload.vendorId)", "entitlement.version": "\(payload.version)"])
                return
            }
            tx.logger.info("entitlement applied", metadata: ["vendor.id": "\(payload.vendorId)", "entitlement.version": "\(payload.version)"])
            try await visibility.refresh(vendor: payload.vendorId, in: tx)
        }
        // A run of orders is answered with its listings locked first, in id order: two partitions'
        // runs that touch the same listings then wait for each other instead of deadlocking.
        handlers.onBatch(OrderEvents.placed) { [stock] orders, tx in
            try await stock.lockListings(orders.map(\.payload.listingId), in: tx)
            for order in orders { try await stock.reserve(order.payload, in: tx) }
        }
        handlers.on(OrderEvents.paid) { [stock] payload, _, tx in try await stock.commit(payload, in: tx) }
        handlers.onBatch(OrderEvents.canceled) { [stock] orders, tx in
            try await stock.lockListings(ofOrders: orders.map(\.payload.orderId), in: tx)
            for order in orders { try await stock.release(order.payload, in: tx) }
        }
        // A vendor's listings, decisions and reservations keep their ids (orders refer to them); the name goes.
        PrivacyParticipant.register(
            service: Self.name,
            export: { user, transaction in
                let profile = try await UsersProjection.exportJSON(user, in: transaction)
                let listings = try await transaction.first("""
                    SELECT coalesce(json_agg(json_build_object('id', l.id, 'title', l.title, 'description', l.description,
                                                               'status', l.status, 'priceAmount', l.price_amount, 'currency', l.currency,
                                                               'city', l.city, 'country', l.country, 'createdAt', l.created_at)
                                             ORDER BY l.created_at DESC), '[]'::json)::text
                    FROM (SELECT * FROM listings WHERE vendor_id = \(user) ORDER BY created_at DESC LIMIT \(Self.exportLimit)) l
                    """, as: String.self) ?? "[]"
                return "{\"profile\":\(profile),\"listings\":\(listings)}"
            },
            erase: { [repository] user, transaction in
                try await UsersProjection.erase(user, in: transaction)
                try await transaction.query("UPDATE vendors SET business_name = NULL WHERE id = \(user)")
                // An erased vendor's listings end (`removed`, told to orders and messaging) and keep
                // nothing they wrote: the row stays for the orders that refer to it.
                let ended = try await transaction.query("""
                    UPDATE listings SET status = CASE WHEN status IN ('closed', 'sold') THEN status ELSE 'removed' END,
                        title = 'Removed listing', description = '', attributes = '{}'::jsonb, media = '[]'::jsonb, city = '',
                        region = NULL, rejection_reason = NULL, version = version + 1, updated_at = \(transaction.now)
                    WHERE vendor_id = \(user)
                    RETURNING id
                    """)
                var ids: [UUID] = []
                for try await id in ended.decode(UUID.self) { ids.append(id) }
                try await transaction.query("UPDATE moderation_decisions SET reason = NULL WHERE listing_id = ANY(\(ids))")
                for id in ids {
                    guard let listing = try await repository.lock(id, in: transaction) else { continue }
                    try await Outbox.emit(ListingEvents.removed, listing.snapshot(at: transaction.now), in: transaction)
                    try await ListingChanges.listing(id, in: transaction)
                }
                try await ListingChanges.vendor(user, in: transaction)
            },
            into: &handlers)
        return handlers
    }
}
