import Contracts
import Foundation
import Logging
@testable import Orders
import Platform
import PostgresNIO
import Testing

/// Orders' projections of other services' events, through its real inbox handlers on a real Postgres.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct OrdersIntegrationTests {
    let logger = TestInfrastructure.logger

    func withOrders(_ body: @Sendable (PostgresClient, Inbox) async throws -> Void) async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try OrdersService.allMigrations(), logger: logger).migrate()
                let config = ConfigReader(values: ["DATABASE_URL": TestInfrastructure.databaseURL!])
                let settings = try ServiceSettings(serviceName: OrdersService.name, defaultPort: OrdersService.defaultPort, reader: config)
                let service = try OrdersService(dependencies: ServiceDependencies(settings: settings, config: config, postgres: client, logger: logger))
                try await body(client, Inbox(client: client, handlers: service.eventHandlers, service: schema, clock: BusinessClock()))
            }
        }
    }

    func listing(_ id: UUID, vendor: UUID, version: Int, published: Bool = true, hidden: String? = nil, price: Int64 = 50_000,
                 available: Int = 3) -> ListingV1 {
        ListingV1(listingId: id, vendorId: vendor, category: "dogs", title: "Collie pups v\(version)", status: published ? "published" : "closed",
                  hiddenReason: hidden, published: published, priceAmount: price, currency: "GBP", quantityAvailable: available,
                  version: version, changedAt: Date())
    }

    func apply(_ inbox: Inbox, _ contract: EventContract<ListingV1>, _ payload: ListingV1) async throws -> Inbox.Outcome {
        let event = try CloudEvent.json(type: contract.type, source: "/marketplace/tests", subject: contract.subject(for: payload),
                                        payload: payload, time: Date())
        return try await inbox.apply(event, topic: Topics.listingsListings, logger: logger)
    }

    func snapshot(_ client: PostgresClient, _ id: UUID) async throws -> ListingSnapshot? {
        try await Database.transaction(client, OperationContext.background(service: "orders", logger: logger, clock: BusinessClock())) { tx in
            try await ListingSnapshots.snapshot(id, in: tx)
        }
    }

    @Test func theListingsProjectionKeepsTheNewestVersionWhateverTheOrder() async throws {
        try await withOrders { client, inbox async throws in
            let id = UUID.v7()
            let vendor = UUID.v7()
            #expect(try await apply(inbox, ListingEvents.published, listing(id, vendor: vendor, version: 1)) == .applied)
            var seen = try #require(try await snapshot(client, id))
            #expect(seen.orderable && seen.quantityAvailable == 3 && seen.price == Money(amount: 50_000, currency: .gbp) && seen.vendorId == vendor)

            // Version 4 (sold out, withdrawn), then 2 and 3 late, then a redelivery of 4.
            _ = try await apply(inbox, ListingEvents.withdrawn, listing(id, vendor: vendor, version: 4, published: false, available: 0))
            _ = try await apply(inbox, ListingEvents.updated, listing(id, vendor: vendor, version: 2, price: 45_000))
            _ = try await apply(inbox, ListingEvents.updated, listing(id, vendor: vendor, version: 3, hidden: "over_quota"))
            seen = try #require(try await snapshot(client, id))
            #expect(seen.version == 4 && !seen.orderable && seen.quantityAvailable == 0 && seen.title == "Collie pups v4",
                    "older versions arriving late change nothing")

            _ = try await apply(inbox, ListingEvents.published, listing(id, vendor: vendor, version: 5, hidden: "vendor_suspended"))
            seen = try #require(try await snapshot(client, id))
            #expect(seen.version == 5 && !seen.orderable, "a hidden listing cannot be ordered")
            _ = try await apply(inbox, ListingEvents.updated, listing(id, vendor: vendor, version: 6, price: 42_000, available: 2))
            seen = try #require(try await snapshot(client, id))
            #expect(seen.orderable && seen.price.amount == 42_000 && seen.quantityAvailable == 2)
            #expect(try await snapshot(client, UUID.v7()) == nil)
        }
    }

    @Test func aVendorsCommissionRateIsTheNewestBillingStated() async throws {
        try await withOrders { client, inbox async throws in
            let vendor = UUID.v7()
            func entitlement(_ version: Int64, bps: Int) throws -> CloudEvent {
                let payload = EntitlementChangedV1(vendorId: vendor, mayPublish: true, mayList: true, listingQuota: 10, commissionBps: bps,
                                                   subscriptionStatus: "active", reason: "test", effectiveAt: Date(), version: version)
                return try CloudEvent.json(type: BillingEvents.entitlementChanged.type, source: "/marketplace/tests",
                                           subject: BillingEvents.entitlementChanged.subject(for: payload), payload: payload, time: Date())
            }
            let context = OperationContext.background(service: "orders", logger: logger, clock: BusinessClock())
            func rate() async throws -> Int? { try await Database.transaction(client, context) { tx in try await VendorCommissions.rate(of: vendor, in: tx) } }
            #expect(try await rate() == nil, "no word from billing yet")
            #expect(try await inbox.apply(try entitlement(2, bps: 500), topic: Topics.billingEntitlements, logger: logger) == .applied)
            _ = try await inbox.apply(try entitlement(1, bps: 800), topic: Topics.billingEntitlements, logger: logger)
            #expect(try await rate() == 500, "an older version arriving late changes nothing")
            _ = try await inbox.apply(try entitlement(3, bps: 1_200), topic: Topics.billingEntitlements, logger: logger)
            #expect(try await rate() == 1_200)
        }
    }
}
