import Foundation
import Platform
import PostgresNIO
import Testing
@testable import Orders

/// Keyset pagination against the real orders schema: every row exactly once, newest first,
/// from both sides of the order, however the pages fall.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct PaginationIntegrationTests {
    let logger = TestInfrastructure.logger

    @Test func pagesWalkEveryOrderOnceNewestFirst() async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: try OrdersService.allMigrations(), logger: logger).migrate()
                let me = UUID.v7()
                let someoneElse = UUID.v7()
                let base = Date(timeIntervalSince1970: 1_795_255_200)
                // 30 as buyer, 15 as vendor, 10 not mine; several share a timestamp to exercise the id tie-break.
                for index in 0..<55 {
                    let (buyer, vendor) = index < 30 ? (me, someoneElse) : index < 45 ? (someoneElse, me) : (someoneElse, UUID.v7())
                    let created = base.addingTimeInterval(Double(index / 3))
                    try await client.query("""
                        INSERT INTO orders (id, buyer_id, vendor_id, status, total_amount, currency, created_at, listing_id, listing_title, quantity,
                                            unit_price_amount, commission_bps, commission_amount, shipping_address, payment_due_at)
                        VALUES (\(UUID.v7()), \(buyer), \(vendor), 'paid', \(Int64(1000 + index)), 'EUR', \(created), \(UUID.v7()), 'Puppy', 1,
                                \(Int64(1000 + index)), 800, 80, '{"name":"A","line1":"B","city":"C","postalCode":"D","country":"DE"}', \(created))
                        """, logger: logger)
                }
                let repository = OrderRepository()
                func page(_ request: KeysetPageRequest, role: OrderRole? = nil) async throws -> Page<OrderView> {
                    try await Database.transaction(client, TestInfrastructure.context("orders")) { tx in
                        try await repository.page(participant: me, role: role, status: nil, request, in: tx)
                    }
                }
                var seen: [OrderView] = []
                var cursor: String?
                var pages = 0
                repeat {
                    let request = try KeysetPageRequest(limit: 20, cursor: cursor, order: OrderRepository.newestFirst, binding: OrderRepository.binding)
                    let page = try await page(request)
                    seen += page.items
                    cursor = page.nextCursor
                    pages += 1
                } while cursor != nil && pages < 10
                #expect(pages == 3)
                #expect(seen.count == 45)
                #expect(Set(seen.map(\.id)).count == 45)
                #expect(seen.allSatisfy { $0.buyerId == me || $0.vendorId == me })
                let keys = seen.map { ($0.createdAt, $0.id.uuidString) }
                #expect(zip(keys, keys.dropFirst()).allSatisfy { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 > $1.1) })
                // A cursor of this list means nothing to another: conversations refuse it (422 on `cursor`).
                let asVendor = try await page(try KeysetPageRequest(limit: 100, cursor: nil, order: OrderRepository.newestFirst,
                                                                    binding: OrderRepository.binding), role: .vendor)
                #expect(asVendor.items.count == 15 && asVendor.items.allSatisfy { $0.vendorId == me }, "one side only")
                let first = try await page(try KeysetPageRequest(limit: 20, cursor: nil, order: OrderRepository.newestFirst, binding: OrderRepository.binding))
                #expect(throws: Problem.validation([FieldError("cursor", "does not belong to this filter and sort; start again without a cursor")])) {
                    _ = try KeysetPageRequest(limit: 20, cursor: first.nextCursor, order: OrderRepository.newestFirst,
                                              binding: KeysetCursor.binding("conversations.mine", sort: "newest"))
                }
            }
        }
    }
}
