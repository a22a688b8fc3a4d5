import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The billing service: vendor plans (and, as the product grows, subscriptions, invoices,
/// payments, refunds, payouts and the ledger). Owns the `billing` schema.
public struct BillingService: ServiceModule {
    public static let name = "billing"
    public static let defaultPort = 8083
    public static let consumedTopics = [Topics.identityUsers]

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let plans: PlanRepository

    public init(dependencies: ServiceDependencies) throws {
        self.plans = PlanRepository(client: dependencies.postgres)
    }

    public func addRoutes(to router: ServiceRouter) {
        router.get("/v1/plans") { request, context -> Response in
            try JSONResponse.cacheable(Page(items: try await plans.active(context.operation), nextCursor: nil), request: request)
        }
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        UsersProjection.participate(as: Self.name, into: &handlers)
        return handlers
    }
}

/// A subscription plan a vendor can choose.
public struct Plan: Sendable, Codable, Equatable {
    public var id: UUID
    public var code: String
    public var name: String
    public var description: String
    /// Per interval.
    public var price: Money
    public var interval: String
    public var trialDays: Int
    public var listingQuota: Int
    /// What the marketplace keeps of each sale, in basis points (800 = 8 %).
    public var commissionBps: Int
}

struct PlanRepository: Sendable {
    let client: PostgresClient

    /// The plans on sale, in display order (a handful of rows; bounded all the same).
    func active(_ context: OperationContext) async throws -> [Plan] {
        let rows = try await client.query("""
            SELECT id, code, name, description, price_amount, currency, billing_interval, trial_days, listing_quota, commission_bps
            FROM plans WHERE active ORDER BY position, code LIMIT 100
            """, logger: context.logger)
        var result: [Plan] = []
        for try await (id, code, name, description, price, currency, interval, trial, quota, commission)
            in rows.decode((UUID, String, String, String, Int64, String, String, Int32, Int32, Int32).self) {
            result.append(Plan(id: id, code: code, name: name, description: description,
                               price: try Money(amount: price, currencyCode: currency), interval: interval,
                               trialDays: Int(trial), listingQuota: Int(quota), commissionBps: Int(commission)))
        }
        return result
    }
}
