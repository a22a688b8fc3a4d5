import Foundation
import Platform
import PostgresNIO

/// Billing's double-entry ledger, in each currency's minor units. Every posting is balanced
/// (checked here and again by the database at commit), append-only, and made once: an entry is
/// known by its kind and reference (`invoice_payment` / the payment intent id), so posting the
/// same fact twice changes nothing.
struct Ledger: Sendable {
    /// The accounts billing posts to; the marketplace's are kept per vendor (a line's `party`).
    enum Account: String, Sendable, CaseIterable {
        /// What vendors owe on open invoices (asset).
        case accountsReceivable = "accounts_receivable"
        /// Subscription fees earned (income).
        case subscriptionRevenue = "subscription_revenue"
        /// Money held for us at the payment provider (asset).
        case providerBalance = "provider_balance"
        /// What the provider kept (expense).
        case providerFees = "provider_fees"
        /// Invoices written off after a served period went unpaid (expense).
        case badDebt = "bad_debt"
        /// Money collected for an invoice that was already closed: owed back to the vendor (liability).
        case unappliedPayments = "unapplied_payments"
        /// Buyers' payments held for orders not yet received, per vendor (liability).
        case orderEscrow = "order_escrow"
        /// Escrow frozen by a dispute or a chargeback, per vendor (liability).
        case disputedEscrow = "disputed_escrow"
        /// What the marketplace owes a vendor for received orders, per vendor (liability; a lost
        /// chargeback after release can make it negative, carried to the next payout).
        case vendorPayable = "vendor_payable"
        /// The marketplace's commission on received orders (income).
        case commissionRevenue = "commission_revenue"
        /// Refunds promised to buyers that the provider has not confirmed yet (liability).
        case refundsPayable = "refunds_payable"
        /// Payouts sent to vendors' accounts that the provider has not confirmed yet (liability).
        case payoutsInTransit = "payouts_in_transit"
        /// What a lost chargeback took beyond what the order's payment still held (expense).
        case chargebackLosses = "chargeback_losses"
        /// Money the provider withholds while a chargeback is open (asset).
        case chargebacksWithheld = "chargebacks_withheld"
    }

    struct Line: Sendable, Equatable {
        var account: Account
        /// Positive debits, negative credits.
        var amount: Int64
        /// Whose money this is (the vendor's, on the marketplace accounts); nil for the platform's own.
        var party: UUID? = nil
    }

    enum LedgerError: Error, Equatable {
        case unbalanced(Int64)
        case empty
    }

    /// One balanced entry to post: known by its kind and reference.
    struct Posting: Sendable, Equatable {
        var kind: String
        var reference: String
        var currency: Currency
        var memo: String
        var lines: [Line]
    }

    /// Posts one balanced entry unless one with this kind and reference exists; answers whether it posted.
    @discardableResult
    func post(kind: String, reference: String, currency: Currency, memo: String, lines: [Line], in tx: Transaction) async throws -> Bool {
        try await post([Posting(kind: kind, reference: reference, currency: currency, memo: memo, lines: lines)], in: tx) == 1
    }

    /// Posts balanced entries, each unless one with its kind and reference exists, in one
    /// statement (a set of renewals posts as cheaply as one). Answers how many were posted.
    @discardableResult
    func post(_ postings: [Posting], in tx: Transaction) async throws -> Int {
        var entries: (ids: [UUID], kinds: [String], references: [String], currencies: [String], memos: [String]) = ([], [], [], [], [])
        var lines: (entries: [UUID], positions: [Int32], accounts: [String], debits: [Int64], credits: [Int64], parties: [UUID?]) = ([], [], [], [], [], [])
        for posting in postings {
            let nonZero = posting.lines.filter { $0.amount != 0 }
            guard !nonZero.isEmpty else { continue }
            let sum = nonZero.reduce(Int64(0)) { $0 + $1.amount }
            guard sum == 0 else { throw LedgerError.unbalanced(sum) }
            let id = UUID.v7(now: tx.now)
            entries.ids.append(id)
            entries.kinds.append(posting.kind)
            entries.references.append(posting.reference)
            entries.currencies.append(posting.currency.code)
            entries.memos.append(posting.memo)
            for (position, line) in nonZero.enumerated() {
                lines.entries.append(id)
                lines.positions.append(Int32(position))
                lines.accounts.append(line.account.rawValue)
                lines.debits.append(max(line.amount, 0))
                lines.credits.append(max(-line.amount, 0))
                lines.parties.append(line.party)
            }
        }
        guard !entries.ids.isEmpty else { return 0 }
        // Lines are written only for the entries the insert kept: a posting made before adds nothing.
        let rows = try await tx.query("""
            WITH entries AS (
                INSERT INTO ledger_entries (id, kind, reference, currency, memo, occurred_at)
                SELECT e.id, e.kind, e.reference, e.currency, e.memo, \(tx.now)
                FROM unnest(\(entries.ids)::uuid[], \(entries.kinds)::text[], \(entries.references)::text[], \(entries.currencies)::text[],
                            \(entries.memos)::text[]) AS e (id, kind, reference, currency, memo)
                ON CONFLICT (kind, reference) DO NOTHING
                RETURNING id)
            INSERT INTO ledger_lines (entry_id, position, account, debit, credit, party_id)
            SELECT l.entry_id, l.position, l.account, l.debit, l.credit, l.party_id
            FROM unnest(\(lines.entries)::uuid[], \(lines.positions)::int[], \(lines.accounts)::text[], \(lines.debits)::bigint[],
                        \(lines.credits)::bigint[], \(NullableArray(lines.parties))::uuid[]) AS l (entry_id, position, account, debit, credit, party_id)
            JOIN entries ON entries.id = l.entry_id
            RETURNING entry_id
            """)
        var posted = Set<UUID>()
        for try await id in rows.decode(UUID.self) { posted.insert(id) }
        return posted.count
    }

    struct AccountBalance: Sendable, Codable, Equatable {
        var account: String
        var currency: String
        /// Debits minus credits: positive for assets and expenses, negative for income.
        var balance: Int64
    }

    struct CurrencyTotals: Sendable, Codable, Equatable {
        var currency: String
        var debits: Int64
        var credits: Int64
    }

    struct TrialBalance: Sendable, Codable, Equatable {
        var accounts: [AccountBalance]
        var currencies: [CurrencyTotals]
    }

    /// Every account's balance per currency, and each currency's total debits and credits.
    func trialBalance(in tx: Transaction) async throws -> TrialBalance {
        var accounts: [AccountBalance] = []
        let rows = try await tx.query("""
            SELECT l.account, e.currency::text, sum(l.debit)::bigint, sum(l.credit)::bigint
            FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id
            GROUP BY l.account, e.currency ORDER BY e.currency, l.account
            """)
        var totals: [String: (Int64, Int64)] = [:]
        for try await (account, currency, debits, credits) in rows.decode((String, String, Int64, Int64).self) {
            accounts.append(AccountBalance(account: account, currency: currency, balance: debits - credits))
            let running = totals[currency, default: (0, 0)]
            totals[currency] = (running.0 + debits, running.1 + credits)
        }
        let currencies = totals.sorted { $0.key < $1.key }.map { CurrencyTotals(currency: $0.key, debits: $0.value.0, credits: $0.value.1) }
        return TrialBalance(accounts: accounts, currencies: currencies)
    }
}
