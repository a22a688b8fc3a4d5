import Contracts
import Foundation
@testable import Listings
import Logging
import Platform
import PostgresNIO
import Testing

/// Listings' reactions to other services' events, through its real inbox handlers on a real
/// Postgres: entitlements in any order, buyers racing for the last units, redelivered orders, and
/// a suspended vendor.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct ListingsIntegrationTests {
    let logger = TestInfrastructure.logger
    static let dogs = UUID(uuidString: "0192f1a0-0000-7000-8000-000000000001")!

    /// A migrated listings schema, the service's inbox, and the client.
    func withListings(_ body: @Sendable (PostgresClient, Inbox) async throws -> Void) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try ListingsService.allMigrations(), logger: logger).migrate()
                let config = ConfigReader(values: ["DATABASE_URL": TestInfrastructure.databaseURL!])
                let settings = try ServiceSettings(serviceName: ListingsService.name, defaultPort: ListingsService.defaultPort, reader: config)
                let service = try ListingsService(dependencies: ServiceDependencies(settings: settings, config: config, postgres: client, logger: logger))
                try await body(client, Inbox(client: client, handlers: service.eventHandlers, service: schema, clock: BusinessClock()))
            }
        }
    }

    func event<Payload: Encodable & Sendable>(_ contract: EventContract<Payload>, _ payload: Payload, time: Date = Date()) throws -> CloudEvent {
        try CloudEvent.json(type: contract.type, source: "/marketplace/tests", subject: contract.subject(for: payload), payload: payload, time: time)
    }

    func entitlement(_ vendor: UUID, version: Int64, mayList: Bool = true, quota: Int = 10) -> EntitlementChangedV1 {
        EntitlementChangedV1(vendorId: vendor, mayPublish: mayList, mayList: mayList, listingQuota: quota, commissionBps: 800,
                             subscriptionStatus: mayList ? "active" : "suspended", reason: "test", effectiveAt: Date(), version: version)
    }

    /// A published listing of `vendor` with `quantity` units, written as the workflow leaves one.
    func publishedListing(_ client: PostgresClient, vendor: UUID, quantity: Int, publishedAt: Date = Date()) async throws -> UUID {
        let id = UUID.v7()
        try await client.query("""
            INSERT INTO listings (id, vendor_id, category_id, status, title, description, attributes, price_amount, currency, quantity,
                                  quantity_available, lat, lon, city, country, created_at, updated_at, published_at, first_published_at)
            VALUES (\(id), \(vendor), \(Self.dogs), 'published', 'Collie pups', 'Two left.', '{"breed":"Collie","sex":"male","birthDate":"2026-01-01"}',
                    50000, 'GBP', \(quantity), \(quantity), 52.4, 0.26, 'Ely', 'GB', now(), now(), \(publishedAt), \(publishedAt))
            """, logger: logger)
        return id
    }

    func hiddenReasons(_ client: PostgresClient, vendor: UUID) async throws -> [String?] {
        let rows = try await client.query("SELECT hidden_reason FROM listings WHERE vendor_id = \(vendor) ORDER BY published_at", logger: logger)
        var reasons: [String?] = []
        for try await reason in rows.decode(String?.self) { reasons.append(reason) }
        return reasons
    }

    @Test func entitlementsApplyInAnyOrderAndAnOlderOneNeverWins() async throws {
        try await withListings { client, inbox async throws in
            let vendor = UUID.v7()
            let start = Date().addingTimeInterval(-60)
            let first = try await publishedListing(client, vendor: vendor, quantity: 1, publishedAt: start)
            let second = try await publishedListing(client, vendor: vendor, quantity: 1, publishedAt: start.addingTimeInterval(1))
            _ = (first, second)
            // Versions 3 (quota 1), then 1 (lapsed) and 2 (quota 10) arriving late.
            #expect(try await inbox.apply(try event(BillingEvents.entitlementChanged, entitlement(vendor, version: 3, quota: 1)), topic: Topics.billingEntitlements, logger: logger) == .applied)
            #expect(try await hiddenReasons(client, vendor: vendor) == [nil, "over_quota"], "the most recently published excess is hidden")
            _ = try await inbox.apply(try event(BillingEvents.entitlementChanged, entitlement(vendor, version: 1, mayList: false)), topic: Topics.billingEntitlements, logger: logger)
            _ = try await inbox.apply(try event(BillingEvents.entitlementChanged, entitlement(vendor, version: 2, quota: 10)), topic: Topics.billingEntitlements, logger: logger)
            #expect(try await TestInfrastructure.scalar(client, "SELECT version FROM entitlements WHERE vendor_id = \(vendor)") == 3)
            #expect(try await hiddenReasons(client, vendor: vendor) == [nil, "over_quota"], "older versions change nothing")
            _ = try await inbox.apply(try event(BillingEvents.entitlementChanged, entitlement(vendor, version: 4, mayList: false)), topic: Topics.billingEntitlements, logger: logger)
            #expect(try await hiddenReasons(client, vendor: vendor) == ["subscription_inactive", "subscription_inactive"])
            _ = try await inbox.apply(try event(BillingEvents.entitlementChanged, entitlement(vendor, version: 5, quota: 5)), topic: Topics.billingEntitlements, logger: logger)
            #expect(try await hiddenReasons(client, vendor: vendor) == [nil, nil], "and both come back")
            #expect(try await TestInfrastructure.scalar(client, """
                SELECT count(*) FROM outbox WHERE type IN ('marketplace.listings.listing.withdrawn.v1', 'marketplace.listings.listing.published.v1')
                """) == 5, "each change of visibility is an event: one hidden, two hidden (one already), two back")
        }
    }

    @Test func twentyBuyersRaceForThreeUnitsAndExactlyThreeAreReserved() async throws {
        try await withListings { client, inbox async throws in
            let vendor = UUID.v7()
            let listing = try await publishedListing(client, vendor: vendor, quantity: 3)
            let orders = (0..<20).map { _ in OrderPlacedV1(orderId: UUID.v7(), listingId: listing, buyerId: UUID.v7(), quantity: 1, placedAt: Date()) }
            let logger = self.logger
            try await withThrowingTaskGroup(of: Void.self) { group in
                for order in orders {
                    let event = try event(OrderEvents.placed, order)
                    group.addTask { _ = try await inbox.apply(event, topic: Topics.ordersOrders, logger: logger) }
                }
                try await group.waitForAll()
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM stock_reservations WHERE status = 'held'") == 3)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM stock_reservations WHERE status = 'rejected' AND reason = 'insufficient_stock'") == 17)
            #expect(try await TestInfrastructure.scalar(client, "SELECT quantity_available FROM listings WHERE id = \(listing)") == 0)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM listings WHERE id = \(listing) AND status = 'sold'") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE type = \(StockEvents.reserved.type)") == 3)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE type = \(StockEvents.rejected.type)") == 17)
        }
    }

    @Test func aRedeliveredOrderReservesOnceAndACancelGivesTheStockBack() async throws {
        try await withListings { client, inbox async throws in
            let listing = try await publishedListing(client, vendor: UUID.v7(), quantity: 2)
            let order = OrderPlacedV1(orderId: UUID.v7(), listingId: listing, buyerId: UUID.v7(), quantity: 2, placedAt: Date())
            let placed = try event(OrderEvents.placed, order)
            #expect(try await inbox.apply(placed, topic: Topics.ordersOrders, logger: logger) == .applied)
            #expect(try await inbox.apply(placed, topic: Topics.ordersOrders, logger: logger) == .duplicate)
            // The same order again under a new event id (a producer that retried): the reservation row answers.
            #expect(try await inbox.apply(try event(OrderEvents.placed, order), topic: Topics.ordersOrders, logger: logger) == .applied)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM stock_reservations") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT quantity_available FROM listings WHERE id = \(listing)") == 0)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE type = \(StockEvents.reserved.type)") == 1)
            let canceled = try event(OrderEvents.canceled, OrderCanceledV1(orderId: order.orderId, listingId: listing, reason: "payment_timeout", canceledAt: Date()))
            _ = try await inbox.apply(canceled, topic: Topics.ordersOrders, logger: logger)
            _ = try await inbox.apply(try event(OrderEvents.canceled, OrderCanceledV1(orderId: order.orderId, listingId: listing, reason: "again", canceledAt: Date())),
                                      topic: Topics.ordersOrders, logger: logger)
            #expect(try await TestInfrastructure.scalar(client, "SELECT quantity_available FROM listings WHERE id = \(listing)") == 2, "released once")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM listings WHERE id = \(listing) AND status = 'published'") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE type = \(StockEvents.released.type)") == 1)
        }
    }

    @Test func aSuspendedVendorsListingsAreHiddenAndReturnOnReinstatement() async throws {
        try await withListings { client, inbox async throws in
            let vendor = UUID.v7()
            let t0 = Date().addingTimeInterval(-10)
            _ = try await inbox.apply(try event(UserEvents.registered, UserRegisteredV1(userId: vendor, displayName: "Ann", roles: ["vendor"], status: "active",
                                                                                         registeredAt: t0, businessName: "Ann's Kennels"), time: t0),
                                      topic: Topics.identityUsers, logger: logger)
            _ = try await inbox.apply(try event(BillingEvents.entitlementChanged, entitlement(vendor, version: 1)), topic: Topics.billingEntitlements, logger: logger)
            _ = try await publishedListing(client, vendor: vendor, quantity: 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM vendors WHERE id = \(vendor) AND business_name = 'Ann''s Kennels'") == 1)
            _ = try await inbox.apply(try event(UserEvents.suspended, UserStatusChangedV1(userId: vendor, status: "suspended", changedAt: t0.addingTimeInterval(2)),
                                                time: t0.addingTimeInterval(2)), topic: Topics.identityUsers, logger: logger)
            #expect(try await hiddenReasons(client, vendor: vendor) == ["vendor_suspended"])
            // A reinstatement older than the suspension changes nothing; a newer one brings the listing back.
            _ = try await inbox.apply(try event(UserEvents.reinstated, UserStatusChangedV1(userId: vendor, status: "active", changedAt: t0.addingTimeInterval(1)),
                                                time: t0.addingTimeInterval(1)), topic: Topics.identityUsers, logger: logger)
            #expect(try await hiddenReasons(client, vendor: vendor) == ["vendor_suspended"])
            _ = try await inbox.apply(try event(UserEvents.reinstated, UserStatusChangedV1(userId: vendor, status: "active", changedAt: t0.addingTimeInterval(3)),
                                                time: t0.addingTimeInterval(3)), topic: Topics.identityUsers, logger: logger)
            #expect(try await hiddenReasons(client, vendor: vendor) == [nil])
        }
    }
}
