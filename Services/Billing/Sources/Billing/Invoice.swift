import Foundation
import Platform
import PostgresNIO

enum InvoiceStatus: String, Sendable, Codable, CaseIterable {
    case draft, open, paid, void, uncollectible
}

/// Why an invoice was made (Stripe's `billing_reason`).
enum InvoiceReason: String, Sendable, Codable {
    case subscriptionCreate = "subscription_create"
    case subscriptionCycle = "subscription_cycle"
    case subscriptionUpdate = "subscription_update"
    case subscriptionResume = "subscription_resume"
}

struct InvoiceLine: Sendable, Codable, Equatable {
    enum Kind: String, Sendable, Codable {
        case plan
        case prorationCredit = "proration_credit"
        case prorationDebit = "proration_debit"
    }

    var kind: Kind
    var description: String
    var planId: UUID
    /// Negative for a credit.
    var amount: Money
    var periodStart: Date
    var periodEnd: Date
}

/// An invoice as the API shows it. `amountDue` is what remains to pay (zero once paid or void).
struct InvoiceView: Sendable, Codable, Equatable {
    var id: UUID
    var number: String?
    var vendorId: UUID
    var subscriptionId: UUID
    var reason: String
    var status: String
    var currency: String
    var subtotal: Money
    var tax: Money
    var total: Money
    var amountPaid: Money
    var amountDue: Money
    var periodStart: Date
    var periodEnd: Date
    var lines: [InvoiceLine]
    var attemptCount: Int
    var nextAttemptAt: Date?
    var createdAt: Date
    var finalizedAt: Date?
    var paidAt: Date?
    var voidedAt: Date?
}

/// Invoices: drafted with their lines, finalised with a gapless number, then paid, voided or
/// written off. A finalised invoice's number, money and lines never change (the database refuses).
struct InvoiceRepository: Sendable {
    static let columns = """
        i.id, i.number, i.vendor_id, i.subscription_id, i.reason, i.status, i.currency, i.subtotal, i.tax, i.total, i.amount_paid,
        i.period_start, i.period_end, i.attempt_count, i.next_attempt_at, i.created_at, i.finalized_at, i.paid_at, i.voided_at
        """
    static let newestFirst = KeysetOrder([.init("i.created_at", .time, descending: true)], idColumn: "i.id", idDescending: true)

    /// Drafts an invoice with its lines (two statements, whatever the number of lines).
    func draft(subscription: Subscription, reason: InvoiceReason, lines: [InvoiceLine], periodStart: Date, periodEnd: Date,
               in tx: Transaction) async throws -> UUID {
        let draft = try Draft(subscription: subscription, reason: reason, lines: lines, periodStart: periodStart, periodEnd: periodEnd, at: tx.now)
        try await insert([draft], in: tx)
        return draft.id
    }

    /// A draft about to be written: its id is known before it is (a renewal points at it).
    struct Draft: Sendable {
        var id: UUID
        var vendorId: UUID
        var subscriptionId: UUID
        var reason: InvoiceReason
        var lines: [InvoiceLine]
        var subtotal: Money
        var periodStart: Date
        var periodEnd: Date

        init(subscription: Subscription, reason: InvoiceReason, lines: [InvoiceLine], periodStart: Date, periodEnd: Date, at now: Date) throws {
            guard let currency = lines.first?.amount.currency else { throw InvoiceError.noLines }
            id = UUID.v7(now: now)
            vendorId = subscription.vendorId
            subscriptionId = subscription.id
            self.reason = reason
            self.lines = lines
            subtotal = try Money.sum(lines.map(\.amount), currency: currency)
            self.periodStart = periodStart
            self.periodEnd = periodEnd
        }
    }

    /// Writes drafts with their lines: two statements, whatever the number of drafts and lines.
    func insert(_ drafts: [Draft], in tx: Transaction) async throws {
        guard !drafts.isEmpty else { return }
        try await tx.query("""
            INSERT INTO invoices (id, vendor_id, subscription_id, reason, status, currency, subtotal, tax, total, period_start, period_end, created_at)
            SELECT d.id, d.vendor_id, d.subscription_id, d.reason, 'draft', d.currency, d.subtotal, 0, d.subtotal, d.period_start, d.period_end, \(tx.now)
            FROM unnest(\(drafts.map(\.id))::uuid[], \(drafts.map(\.vendorId))::uuid[], \(drafts.map(\.subscriptionId))::uuid[],
                        \(drafts.map(\.reason.rawValue))::text[], \(drafts.map(\.subtotal.currency.code))::text[], \(drafts.map(\.subtotal.amount))::bigint[],
                        \(drafts.map(\.periodStart))::timestamptz[], \(drafts.map(\.periodEnd))::timestamptz[])
                 AS d (id, vendor_id, subscription_id, reason, currency, subtotal, period_start, period_end)
            """)
        let lines = drafts.flatMap { draft in draft.lines.enumerated().map { (invoice: draft.id, position: Int32($0.offset), line: $0.element) } }
        try await tx.query("""
            INSERT INTO invoice_lines (invoice_id, position, kind, description, plan_id, amount, period_start, period_end)
            SELECT l.invoice_id, l.position, l.kind, l.description, l.plan_id, l.amount, l.period_start, l.period_end
            FROM unnest(\(lines.map(\.invoice))::uuid[], \(lines.map(\.position))::int[], \(lines.map(\.line.kind.rawValue))::text[],
                        \(lines.map(\.line.description))::text[], \(lines.map(\.line.planId))::uuid[], \(lines.map(\.line.amount.amount))::bigint[],
                        \(lines.map(\.line.periodStart))::timestamptz[], \(lines.map(\.line.periodEnd))::timestamptz[])
                 AS l (invoice_id, position, kind, description, plan_id, amount, period_start, period_end)
            """)
    }

    /// Drafts an invoice and finalises it at once: what a vendor's own action (subscribing,
    /// upgrading, resuming) invoices, so the answer already shows the numbered invoice.
    func issue(subscription: Subscription, reason: InvoiceReason, lines: [InvoiceLine], periodStart: Date, periodEnd: Date,
               in tx: Transaction) async throws -> InvoiceView {
        let id = try await draft(subscription: subscription, reason: reason, lines: lines, periodStart: periodStart, periodEnd: periodEnd, in: tx)
        try await finalize(id, in: tx)
        guard let invoice = try await load(id, in: tx) else { throw InvoiceError.vanished(id) }
        return invoice
    }

    /// Gives a draft its number and opens it. The year's counter row stays locked until this
    /// transaction ends, so numbers are taken in commit order and a rolled-back transaction
    /// gives its number back: no gaps, no duplicates.
    func finalize(_ id: UUID, in tx: Transaction) async throws {
        let year = Calendar.utc.component(.year, from: tx.now)
        let number = try await tx.first("""
            INSERT INTO invoice_number_counters (year, last_number) VALUES (\(year), 1)
            ON CONFLICT (year) DO UPDATE SET last_number = invoice_number_counters.last_number + 1
            RETURNING last_number
            """, as: Int32.self) ?? 0
        try await tx.query("""
            UPDATE invoices SET number = \(Self.number(Int(number), year: year)), status = 'open', finalized_at = \(tx.now)
            WHERE id = \(id) AND status = 'draft'
            """)
    }

    static func number(_ number: Int, year: Int) -> String {
        "INV-\(year)-" + String(repeating: "0", count: max(0, 6 - String(number).count)) + String(number)
    }

    /// A finalised invoice, as the set finaliser reports it.
    struct Finalized: Sendable, Equatable {
        var id: UUID
        var number: String
        var subscriptionId: UUID
        var total: Money
    }

    /// Finalises up to `limit` drafts, oldest first (finalisers stored without the drafts' ids).
    func finalizeDrafts(limit: Int, in tx: Transaction) async throws -> [Finalized] {
        var ids: [UUID] = []
        for try await id in try await tx.query("""
            SELECT id FROM invoices WHERE status = 'draft' ORDER BY created_at, id LIMIT \(limit) FOR UPDATE SKIP LOCKED
            """).decode(UUID.self) {
            ids.append(id)
        }
        return try await finalizeDrafts(ids, in: tx)
    }

    /// Finalises the drafts named (those still drafts) in one statement: one update of the year's
    /// counter for the whole set (it stays locked only until this short transaction commits), the
    /// drafts numbered in creation order from it, opened and marked due for collection now. Waits
    /// for a draft another transaction holds (a cancellation voiding it). Found by id alone (the
    /// status is checked on the locked rows): no walk over the drafts' index, whose entries for
    /// drafts finalised before linger until vacuum and whose statistics say it is nearly empty.
    func finalizeDrafts(_ ids: [UUID], in tx: Transaction) async throws -> [Finalized] {
        guard !ids.isEmpty else { return [] }
        let year = Calendar.utc.component(.year, from: tx.now)
        let rows = try await tx.query("""
            WITH locked AS MATERIALIZED (
                SELECT id, created_at, status FROM invoices WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE),
            picked AS (SELECT id, created_at FROM locked WHERE status = 'draft'),
            counter AS (
                INSERT INTO invoice_number_counters (year, last_number) SELECT \(year), count(*) FROM picked HAVING count(*) > 0
                ON CONFLICT (year) DO UPDATE SET last_number = invoice_number_counters.last_number + EXCLUDED.last_number
                RETURNING last_number),
            numbered AS (
                SELECT p.id, (SELECT last_number FROM counter) - count(*) OVER () + row_number() OVER (ORDER BY p.created_at, p.id) AS n
                FROM picked p)
            UPDATE invoices i SET
                number = 'INV-' || \(year) || '-' || lpad(numbered.n::text, greatest(6, length(numbered.n::text)), '0'),
                status = 'open', finalized_at = \(tx.now), next_attempt_at = \(tx.now)
            FROM numbered WHERE i.id = numbered.id
            RETURNING i.id, i.number, i.subscription_id, i.total, i.currency
            """)
        var finalized: [Finalized] = []
        for try await (id, number, subscription, total, currency) in rows.decode((UUID, String, UUID, Int64, String).self) {
            finalized.append(Finalized(id: id, number: number, subscriptionId: subscription, total: try Money(amount: total, currencyCode: currency)))
        }
        return finalized
    }

    /// The invoice, its row locked: payments and status changes serialise here. Without its
    /// lines unless asked (collection needs the totals only).
    func lock(_ id: UUID, lines: Bool = false, in tx: Transaction) async throws -> InvoiceView? {
        try await views(tx.query("SELECT \(unescaped: Self.columns) FROM invoices i WHERE i.id = \(id) FOR UPDATE"), lines: lines, in: tx).first
    }

    /// Several invoices locked, without their lines, in id order (the order locks are taken in).
    func lock(_ ids: [UUID], in tx: Transaction) async throws -> [InvoiceView] {
        guard !ids.isEmpty else { return [] }
        return try await views(tx.query("SELECT \(unescaped: Self.columns) FROM invoices i WHERE i.id = ANY(\(ids)) ORDER BY i.id FOR UPDATE"),
                               lines: false, in: tx)
    }

    func load(_ id: UUID, lines: Bool = true, in tx: Transaction) async throws -> InvoiceView? {
        try await views(tx.query("SELECT \(unescaped: Self.columns) FROM invoices i WHERE i.id = \(id)"), lines: lines, in: tx).first
    }

    /// The subscription's unsettled invoices, drafts and open (a handful at most), locked.
    func unsettled(of subscription: UUID, in tx: Transaction) async throws -> [InvoiceView] {
        try await views(tx.query("""
            SELECT \(unescaped: Self.columns) FROM invoices i WHERE i.subscription_id = \(subscription) AND i.status IN ('draft', 'open')
            ORDER BY i.created_at LIMIT 50 FOR UPDATE
            """), lines: false, in: tx)
    }

    func markPaid(_ id: UUID, amount: Money, in tx: Transaction) async throws {
        try await markPaid([(id, amount)], in: tx)
    }

    /// Marks open invoices paid, in one statement.
    func markPaid(_ payments: [(id: UUID, amount: Money)], in tx: Transaction) async throws {
        guard !payments.isEmpty else { return }
        // Found by id only and left as they are unless open: a `status = 'open'` condition would
        // let the planner walk the unsettled invoices' index, which its statistics (taken when few
        // invoices were open) make look tiny on the very day renewals fill it.
        try await tx.query("""
            UPDATE invoices i SET status = CASE WHEN i.status = 'open' THEN 'paid' ELSE i.status END,
                amount_paid = CASE WHEN i.status = 'open' THEN p.amount ELSE i.amount_paid END,
                paid_at = CASE WHEN i.status = 'open' THEN \(tx.now) ELSE i.paid_at END,
                next_attempt_at = CASE WHEN i.status = 'open' THEN NULL ELSE i.next_attempt_at END
            FROM unnest(\(payments.map(\.id))::uuid[], \(payments.map(\.amount.amount))::bigint[]) AS p (id, amount)
            WHERE i.id = p.id
            """)
    }

    func close(_ id: UUID, as status: InvoiceStatus, in tx: Transaction) async throws {
        try await tx.query("""
            UPDATE invoices SET status = \(status.rawValue), voided_at = \(tx.now), next_attempt_at = NULL
            WHERE id = \(id) AND status IN ('draft', 'open')
            """)
    }

    /// Counts an attempt about to be made; the number is the charge's idempotency key's.
    func beginAttempt(_ id: UUID, in tx: Transaction) async throws -> Int {
        try await beginAttempts([id], in: tx)[id] ?? 0
    }

    /// Counts an attempt at each of `ids`, in one statement: each invoice's attempt number.
    func beginAttempts(_ ids: [UUID], in tx: Transaction) async throws -> [UUID: Int] {
        guard !ids.isEmpty else { return [:] }
        var attempts: [UUID: Int] = [:]
        let rows = try await tx.query("UPDATE invoices SET attempt_count = attempt_count + 1 WHERE id = ANY(\(ids)) RETURNING id, attempt_count")
        for try await (id, attempt) in rows.decode((UUID, Int32).self) { attempts[id] = Int(attempt) }
        return attempts
    }

    func setNextAttempt(_ id: UUID, at: Date?, in tx: Transaction) async throws {
        try await tx.query("UPDATE invoices SET next_attempt_at = \(at) WHERE id = \(id)")
    }

    /// One keyset page, newest first: the vendor's (or, for an admin with no vendor, everyone's).
    func page(vendor: UUID?, status: String?, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<InvoiceView> {
        let rows = try await tx.query("""
            SELECT \(unescaped: Self.columns) FROM invoices i
            WHERE (\(vendor)::uuid IS NULL OR i.vendor_id = \(vendor)) AND (\(status)::text IS NULL OR i.status = \(status))
              AND \(after: page)
            ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)
        return page.page(try await views(rows, in: tx)) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    /// Rows to views, with every invoice's lines read in one more query (never one per invoice).
    func views(_ rows: PostgresRowSequence, lines withLines: Bool = true, in tx: Transaction) async throws -> [InvoiceView] {
        var invoices: [InvoiceView] = []
        for try await row in rows {
            let c = row.makeRandomAccess()
            let currency = try Currency(code: try c[6].decode(String.self))
            func money(_ index: Int) throws -> Money { Money(amount: try c[index].decode(Int64.self), currency: currency) }
            let status = try c[5].decode(String.self)
            let total = try money(9)
            let paid = try money(10)
            let due = status == "open" ? Money(amount: total.amount - paid.amount, currency: currency) : .zero(currency)
            invoices.append(InvoiceView(
                id: try c[0].decode(UUID.self), number: try c[1].decode(String?.self), vendorId: try c[2].decode(UUID.self),
                subscriptionId: try c[3].decode(UUID.self), reason: try c[4].decode(String.self), status: status, currency: currency.code,
                subtotal: try money(7), tax: try money(8), total: total, amountPaid: paid, amountDue: due,
                periodStart: try c[11].decode(Date.self), periodEnd: try c[12].decode(Date.self), lines: [],
                attemptCount: Int(try c[13].decode(Int32.self)), nextAttemptAt: try c[14].decode(Date?.self),
                createdAt: try c[15].decode(Date.self), finalizedAt: try c[16].decode(Date?.self), paidAt: try c[17].decode(Date?.self),
                voidedAt: try c[18].decode(Date?.self)))
        }
        guard withLines, !invoices.isEmpty else { return invoices }
        let lineRows = try await tx.query("""
            SELECT l.invoice_id, l.kind, l.description, l.plan_id, l.amount, i.currency, l.period_start, l.period_end
            FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
            WHERE l.invoice_id = ANY(\(invoices.map(\.id))) ORDER BY l.invoice_id, l.position
            """)
        var lines: [UUID: [InvoiceLine]] = [:]
        for try await (invoice, kind, description, plan, amount, currency, start, end)
            in lineRows.decode((UUID, String, String, UUID, Int64, String, Date, Date).self) {
            lines[invoice, default: []].append(InvoiceLine(kind: InvoiceLine.Kind(rawValue: kind) ?? .plan, description: description, planId: plan,
                                                           amount: try Money(amount: amount, currencyCode: currency),
                                                           periodStart: start, periodEnd: end))
        }
        return invoices.map { var invoice = $0; invoice.lines = lines[$0.id] ?? []; return invoice }
    }
}

enum InvoiceError: Error, Equatable {
    case noLines
    case vanished(UUID)
}

extension Calendar {
    /// The Gregorian calendar in UTC: periods, invoice years.
    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        return calendar
    }()
}
