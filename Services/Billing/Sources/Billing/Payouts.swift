import Foundation
import Logging
import Platform
import PostgresNIO

struct VendorPayoutJob: Codable, Sendable {
    var vendorId: UUID
    /// The daily run's date (`2026-12-05`): with the vendor and the currency, the provider's key.
    var day: String
}

/// A vendor's money and where it goes: the balance (a ledger query over the vendor's lines),
/// the payout account at the provider, and the daily payouts of what is available.
struct Payouts: Sendable {
    /// One vendor's payout of the day; key `<vendor>:<day>`.
    static let payVendor = JobKind<VendorPayoutJob>("billing.pay-vendor", maxAttempts: 20, backoff: .seconds(30), maximumBackoff: .seconds(3600))
    /// The daily run's name (`recurring:billing.daily-payouts`).
    static let dailyRun = "billing.daily-payouts"

    let provider: any PaymentProvider
    let ledger: Ledger
    let client: PostgresClient
    /// Where the provider's onboarding returns the vendor (`PAYOUT_ONBOARDING_RETURN_URL`, `…_REFRESH_URL`).
    let onboardingReturnURL: String
    let onboardingRefreshURL: String

    // MARK: Balance

    struct Balance: Codable, Sendable, Equatable {
        /// Held in escrow for orders not yet received.
        var pending: [Money]
        /// Payable: released and not yet paid out (negative when a chargeback took back more).
        var available: [Money]
        /// Frozen by disputes and chargebacks.
        var inDispute: [Money]
    }

    /// The vendor's balance from its ledger lines (the marketplace's liabilities to it, so credits
    /// minus debits), each currency it has ever had money in.
    func balance(of vendor: UUID, in tx: Transaction) async throws -> Balance {
        var balance = Balance(pending: [], available: [], inDispute: [])
        let rows = try await tx.query("""
            SELECT l.account, e.currency::text, (sum(l.credit) - sum(l.debit))::bigint
            FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id
            WHERE l.party_id = \(vendor) AND l.account = ANY(\([Ledger.Account.orderEscrow, .vendorPayable, .disputedEscrow].map(\.rawValue)))
            GROUP BY l.account, e.currency ORDER BY e.currency
            """)
        for try await (account, currency, amount) in rows.decode((String, String, Int64).self) {
            let money = try Money(amount: amount, currencyCode: currency)
            switch Ledger.Account(rawValue: account) {
            case .orderEscrow?: balance.pending.append(money)
            case .vendorPayable?: balance.available.append(money)
            case .disputedEscrow?: balance.inDispute.append(money)
            default: continue
            }
        }
        return balance
    }

    // MARK: Payout account

    struct AccountView: Codable, Sendable, Equatable {
        var id: String
        var status: String
        /// While pending (Stripe): where the vendor finishes onboarding.
        var onboardingUrl: String?
        var createdAt: Date
    }

    var onboarding: (UUID) -> NewPayoutAccount {
        { NewPayoutAccount(vendorId: $0, returnURL: onboardingReturnURL, refreshURL: onboardingRefreshURL) }
    }

    /// The vendor's account, made at the provider the first time (key: the vendor, so a retry or
    /// a second request is the same account); a pending one is read again for its status.
    func registerAccount(vendor: UUID, context: OperationContext) async throws -> (AccountView, created: Bool) {
        if let existing = try await account(of: vendor, context: context) { return (existing, false) }
        let account: ProviderPayoutAccount
        do {
            account = try await provider.createPayoutAccount(onboarding(vendor), idempotencyKey: "payout-account:\(vendor.lowercased)")
        } catch let error as ProviderError {
            context.logger.warning("payout account not created", metadata: ["error": "\(error)"])
            throw BillingError.providerUnavailable
        }
        return try await Database.transaction(client, context) { tx in
            let inserted = try await tx.first("""
                INSERT INTO payout_accounts (vendor_id, provider, account_id, status, onboarding_url, created_at, updated_at)
                VALUES (\(vendor), \(provider.name), \(account.id), \(account.status.rawValue), \(account.onboardingURL), \(tx.now), \(tx.now))
                ON CONFLICT (vendor_id) DO NOTHING
                RETURNING true
                """, as: Bool.self) == true
            guard let view = try await stored(vendor, in: tx) else { throw BillingError.payoutAccountNotFound }
            return (view, inserted)
        }
    }

    /// The vendor's account, or nil; a pending one is brought up to date from the provider.
    func account(of vendor: UUID, context: OperationContext) async throws -> AccountView? {
        guard let view = try await Database.transaction(client, context, { tx in try await stored(vendor, in: tx) }) else { return nil }
        guard view.status == ProviderPayoutAccount.Status.pending.rawValue else { return view }
        guard let fresh = try? await provider.payoutAccount(view.id, onboarding: onboarding(vendor)) else { return view }
        return try await Database.transaction(client, context) { tx in
            try await tx.query("""
                UPDATE payout_accounts SET status = \(fresh.status.rawValue), onboarding_url = \(fresh.onboardingURL), version = version + 1,
                    updated_at = \(tx.now)
                WHERE vendor_id = \(vendor)
                """)
            return try await stored(vendor, in: tx) ?? view
        }
    }

    private func stored(_ vendor: UUID, in tx: Transaction) async throws -> AccountView? {
        for try await (id, status, url, created) in try await tx.query("""
            SELECT account_id, status, onboarding_url, created_at FROM payout_accounts WHERE vendor_id = \(vendor)
            """).decode((String, String, String?, Date).self) {
            return AccountView(id: id, status: status, onboardingUrl: url, createdAt: created)
        }
        return nil
    }

    // MARK: Daily payouts

    /// The daily run: a payout job for every vendor with released orders not yet paid out (the
    /// jobs run on their own, so one vendor's failing transfer holds up no one else).
    func scheduleDaily(in tx: Transaction) async throws {
        let day = Self.day(tx.now)
        var jobs: [(key: String, payload: VendorPayoutJob, due: Date)] = []
        for try await vendor in try await tx.query("""
            SELECT DISTINCT vendor_id FROM order_payments WHERE released_at IS NOT NULL AND payout_id IS NULL
            """).decode(UUID.self) {
            jobs.append(("\(vendor.lowercased):\(day)", VendorPayoutJob(vendorId: vendor, day: day), tx.now))
        }
        try await tx.schedule(Self.payVendor, jobs)
        tx.logger.info("daily payouts scheduled", metadata: ["vendors": "\(jobs.count)", "day": "\(day)"])
    }

    static func day(_ date: Date) -> String {
        let c = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        return String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    /// One vendor's payout: without an active payout account the money stays available. Per
    /// currency with a positive available balance (a negative one is carried to a later run): a
    /// payout row covering the released orders not yet paid out, the balance moved to payouts in
    /// transit, the provider's transfer (key: vendor, day and currency, so a retry after a crash
    /// is the same transfer), and the transfer posted as paid.
    func pay(_ job: VendorPayoutJob, in tx: Transaction) async throws {
        let vendor = job.vendorId
        var account: String?
        for try await id in try await tx.query("""
            SELECT account_id FROM payout_accounts WHERE vendor_id = \(vendor) AND status = 'active' FOR UPDATE
            """).decode(String.self) {
            account = id
        }
        guard let account else {
            tx.logger.info("no active payout account; the balance stays available", metadata: ["vendor.id": "\(vendor.lowercased)"])
            return
        }
        for available in try await balance(of: vendor, in: tx).available where available.isPositive {
            let payoutId = UUID.v7(now: tx.now)
            try await tx.query("""
                INSERT INTO payouts (id, vendor_id, amount, currency, status, account_id, created_at)
                VALUES (\(payoutId), \(vendor), \(available.amount), \(available.currency.code), 'pending', \(account), \(tx.now))
                """)
            try await tx.query("""
                UPDATE order_payments SET payout_id = \(payoutId), updated_at = \(tx.now)
                WHERE vendor_id = \(vendor) AND currency = \(available.currency.code) AND released_at IS NOT NULL AND payout_id IS NULL
                """)
            try await ledger.post(kind: "payout_initiated", reference: payoutId.lowercased, currency: available.currency, memo: "payout to \(account)",
                                  lines: [.init(account: .vendorPayable, amount: available.amount, party: vendor),
                                          .init(account: .payoutsInTransit, amount: -available.amount)], in: tx)
            let transfer = try await provider.transfer(
                TransferRequest(amount: available, destination: account, transferGroup: nil,
                                metadata: ["vendor_id": vendor.lowercased, "payout_id": payoutId.lowercased]),
                idempotencyKey: "payout:\(vendor.lowercased):\(job.day):\(available.currency.code)")
            try await tx.query("""
                UPDATE payouts SET status = 'paid', transfer_id = \(transfer.id), paid_at = \(tx.now) WHERE id = \(payoutId)
                """)
            try await ledger.post(kind: "payout_paid", reference: payoutId.lowercased, currency: available.currency, memo: "transfer \(transfer.id)",
                                  lines: [.init(account: .payoutsInTransit, amount: available.amount),
                                          .init(account: .providerBalance, amount: -available.amount)], in: tx)
            tx.logger.info("vendor paid out", metadata: ["vendor.id": "\(vendor.lowercased)", "payout.id": "\(payoutId.lowercased)",
                                                         "amount": "\(available)"])
        }
    }

    // MARK: Reads

    struct PayoutView: Codable, Sendable, Equatable {
        var id: UUID
        var amount: Money
        var status: String
        var transferId: String?
        /// The orders it covers: at most the first 100 (`orderCount` says how many in all).
        var orders: [UUID]
        var orderCount: Int
        var createdAt: Date
        var paidAt: Date?
    }

    static let newestFirst = KeysetOrder([.init("p.created_at", .time, descending: true)], idColumn: "p.id", idDescending: true)

    func page(vendor: UUID, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<PayoutView> {
        let rows = try await tx.query("""
            SELECT p.id, p.amount, p.currency::text, p.status, p.transfer_id, p.created_at, p.paid_at,
                   coalesce(o.ids, '{}'::uuid[]), coalesce(o.count, 0)::bigint
            FROM payouts p
            LEFT JOIN LATERAL (SELECT (array_agg(order_id ORDER BY order_id))[1:100] AS ids, count(*) AS count
                               FROM order_payments WHERE payout_id = p.id) o ON true
            WHERE p.vendor_id = \(vendor) AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)
        var items: [PayoutView] = []
        for try await (id, amount, currency, status, transfer, created, paid, orders, count)
            in rows.decode((UUID, Int64, String, String, String?, Date, Date?, [UUID], Int64).self) {
            items.append(PayoutView(id: id, amount: try Money(amount: amount, currencyCode: currency), status: status, transferId: transfer,
                                    orders: orders, orderCount: Int(count), createdAt: created, paidAt: paid))
        }
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }
}
