import Foundation
import Platform
import PostgresNIO

/// Billing's double-entry ledger, in each currency's minor units. Every posting is balanced
/// (checked here and again by the database at commit), append-only, and made once: an entry is
/// known by its kind and reference (`invoice_payment` / the payment intent id), so posting the
/// same fact twice changes nothing.
struct Ledger: Sendable {
    /// The accounts billing posts to so far (orders add escrow and vendor payables).
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
    }

    struct Line: Sendable, Equatable {
        var account: Account
        /// Positive debits, negative credits.
        var amount: Int64
    }

    enum LedgerError: Error, Equatable {
        case unbalanced(Int64)
        case empty
    }

    /// Posts one balanced entry unless one with this kind and reference exists; answers whether it posted.
    @discardableResult
    func post(kind: String, reference: String, currency: Currency, memo: String, lines: [Line], in tx: Transaction) async throws -> Bool {
        let nonZero = lines.filter { $0.amount != 0 }
        guard !nonZero.isEmpty else { return false }
        let sum = nonZero.reduce(Int64(0)) { $0 + $1.amount }
        guard sum == 0 else { throw LedgerError.unbalanced(sum) }
        let id = UUID.v7(now: tx.now)
        guard try await tx.first("""
            INSERT INTO ledger_entries (id, kind, reference, currency, memo, occurred_at)
            VALUES (\(id), \(kind), \(reference), \(currency.code), \(memo), \(tx.now))
            ON CONFLICT (kind, reference) DO NOTHING RETURNING true
            """, as: Bool.self) == true else { return false }
        for (position, line) in nonZero.enumerated() {
            try await tx.query("""
                INSERT INTO ledger_lines (entry_id, position, account, debit, credit)
                VALUES (\(id), \(position), \(line.account.rawValue), \(max(line.amount, 0)), \(max(-line.amount, 0)))
                """)
        }
        return true
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
