import Foundation
import NIOConcurrencyHelpers
import Platform
import PostgresNIO

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
    /// Plans by id. A plan never changes while the service runs (only migrations write the
    /// table, and a price change is a new plan), so each is read once per process.
    let cache = NIOLockedValueBox<[UUID: Plan]>([:])
    static let columns = "id, code, name, description, price_amount, currency, billing_interval, trial_days, listing_quota, commission_bps"

    /// The plans on sale, in display order (a handful of rows; bounded all the same).
    func active(_ context: OperationContext) async throws -> [Plan] {
        try await decode(client.query("SELECT \(unescaped: Self.columns) FROM plans WHERE active ORDER BY position, code LIMIT 100",
                                      logger: context.logger))
    }
}

extension Plan {
    /// One period of the plan from `start`: a calendar month or year in UTC.
    func periodEnd(from start: Date) -> Date {
        let component: Calendar.Component = interval == "year" ? .year : .month
        return Calendar.utc.date(byAdding: component, value: 1, to: start) ?? start.addingTimeInterval(interval == "year" ? 365 * 86_400 : 30 * 86_400)
    }
}

extension PlanRepository {
    /// A plan by id, sold or not (a subscription keeps a retired plan), in the transaction.
    func plan(_ id: UUID, in tx: Transaction) async throws -> Plan? {
        if let known = cache.withLockedValue({ $0[id] }) { return known }
        guard let plan = try await decode(tx.query("SELECT \(unescaped: Self.columns) FROM plans WHERE id = \(id)")).first else { return nil }
        cache.withLockedValue { $0[id] = plan }
        return plan
    }

    /// A plan on sale, named by its code (`breeder-monthly`) or its id.
    func onSale(_ reference: String, context: OperationContext) async throws -> Plan? {
        let rows: PostgresRowSequence
        if let id = UUID(uuidString: reference) {
            rows = try await client.query("SELECT \(unescaped: Self.columns) FROM plans WHERE active AND id = \(id)", logger: context.logger)
        } else {
            rows = try await client.query("SELECT \(unescaped: Self.columns) FROM plans WHERE active AND code = \(reference)", logger: context.logger)
        }
        return try await decode(rows).first
    }

    func decode(_ rows: PostgresRowSequence) async throws -> [Plan] {
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
