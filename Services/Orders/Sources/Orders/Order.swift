import Contracts
import Foundation
import Platform
import PostgresNIO

/// Where an order ships to, as the buyer gave it.
struct ShippingAddress: Sendable, Codable, Equatable {
    var name: String
    var line1: String
    var line2: String?
    var city: String
    var postalCode: String
    /// ISO 3166-1 alpha-2.
    var country: String
}

/// An order as orders stores it. The price, the commission and the listing's title are fixed when
/// the order is placed; the payment fields are billing's word (`billing.payments.v1`).
struct OrderRecord: Sendable, Equatable {
    var id: UUID
    var buyerId: UUID
    var vendorId: UUID
    var status: OrderStatus
    var listingId: UUID
    var listingTitle: String
    var quantity: Int
    var unitPrice: Money
    var total: Money
    var commissionBps: Int
    var commission: Money
    var shippingAddress: ShippingAddress
    var paymentDueAt: Date
    var payment: PaymentView?
    var refunded: Money
    var carrier: String?
    var trackingNumber: String?
    var cancelReason: String?
    /// Listings has reserved the units (`stock.reserved` at the price the order states).
    var stockConfirmed: Bool
    var version: Int
    var createdAt: Date
    var updatedAt: Date
}

/// The order's payment as its buyer's client needs it: the intent to confirm and where it stands.
struct PaymentView: Sendable, Codable, Equatable {
    var intentId: String
    var clientSecret: String?
    var status: String
}

/// One change in an order's life.
struct OrderChange: Sendable, Codable, Equatable {
    var status: String
    var at: Date
    /// What happened, in the transition table's words (`placed`, `paid`, `shipped`, …).
    var event: String
    /// The buyer or vendor who asked; null for the clock and the other services.
    var actorId: UUID?
    var note: String?
}

/// The order as the API shows it (`POST /v1/orders`, `GET /v1/orders/{id}`, the lists; `history`
/// on single reads only).
struct OrderView: Sendable, Codable, Equatable {
    struct Listing: Sendable, Codable, Equatable {
        var id: UUID
        var title: String
        var unitPrice: Money
        var vendorId: UUID
    }

    struct Shipment: Sendable, Codable, Equatable {
        var carrier: String
        var trackingNumber: String
    }

    var id: UUID
    var status: String
    var buyerId: UUID
    var vendorId: UUID
    var listing: Listing
    var quantity: Int
    var total: Money
    var commission: Money
    var refundedAmount: Money
    var payment: PaymentView?
    var paymentDueAt: Date
    var shippingAddress: ShippingAddress
    var shipment: Shipment?
    var cancelReason: String?
    var version: Int
    var createdAt: Date
    var updatedAt: Date
    var history: [OrderChange]

    init(_ o: OrderRecord, history: [OrderChange]) {
        id = o.id
        status = o.status.rawValue
        buyerId = o.buyerId
        vendorId = o.vendorId
        listing = Listing(id: o.listingId, title: o.listingTitle, unitPrice: o.unitPrice, vendorId: o.vendorId)
        quantity = o.quantity
        total = o.total
        commission = o.commission
        refundedAmount = o.refunded
        payment = o.payment
        paymentDueAt = o.paymentDueAt
        shippingAddress = o.shippingAddress
        shipment = o.carrier.flatMap { carrier in o.trackingNumber.map { Shipment(carrier: carrier, trackingNumber: $0) } }
        cancelReason = o.cancelReason
        version = o.version
        createdAt = o.createdAt
        updatedAt = o.updatedAt
        self.history = history
    }
}

/// Orders' rows: one statement per read or write, the row locked for every change.
struct OrderRepository: Sendable {
    static let columns = """
        id, buyer_id, vendor_id, status, listing_id, listing_title, quantity, unit_price_amount, total_amount, currency, commission_bps,
        commission_amount, shipping_address::text, payment_due_at, payment_intent_id, payment_client_secret, payment_status, refunded_amount,
        carrier, tracking_number, cancel_reason, stock_confirmed, version, created_at, updated_at
        """

    /// Newest first; a cursor of this list is refused by any other.
    static let newestFirst = KeysetOrder([.init("created_at", .time, descending: true)], idColumn: "id", idDescending: true)
    static let binding = KeysetCursor.binding("orders.mine", sort: "newest")

    func insert(_ o: OrderRecord, in tx: Transaction) async throws {
        try await tx.query("""
            INSERT INTO orders (id, buyer_id, vendor_id, status, listing_id, listing_title, quantity, unit_price_amount, total_amount, currency,
                commission_bps, commission_amount, shipping_address, payment_due_at, refunded_amount, version, created_at, updated_at)
            VALUES (\(o.id), \(o.buyerId), \(o.vendorId), \(o.status.rawValue), \(o.listingId), \(o.listingTitle), \(o.quantity),
                \(o.unitPrice.amount), \(o.total.amount), \(o.total.currency.code), \(o.commissionBps), \(o.commission.amount),
                \(try JSONWriter.string(o.shippingAddress))::jsonb, \(o.paymentDueAt), 0, \(o.version), \(o.createdAt), \(o.updatedAt))
            """)
    }

    /// The order, its row locked until the transaction ends: every change goes through here.
    func lock(_ id: UUID, in tx: Transaction) async throws -> OrderRecord? {
        try await Self.decode(tx.query("SELECT \(unescaped: Self.columns) FROM orders WHERE id = \(id) FOR UPDATE")).first
    }

    /// Locks these orders in id order (the order every run of answers takes them in).
    func lockInOrder(_ ids: [UUID], in tx: Transaction) async throws {
        guard ids.count > 1 else { return }
        try await tx.query("SELECT id FROM orders WHERE id = ANY(\(Array(Set(ids)))) ORDER BY id FOR UPDATE")
    }

    func load(_ id: UUID, in tx: Transaction) async throws -> OrderRecord? {
        try await Self.decode(tx.query("SELECT \(unescaped: Self.columns) FROM orders WHERE id = \(id)")).first
    }

    /// Writes the order's mutable columns with its next version; one that did not change is left as it is.
    func update(_ o: OrderRecord, from current: OrderRecord, in tx: Transaction) async throws -> OrderRecord {
        guard o != current else { return current }
        var updated = o
        updated.version = current.version + 1
        updated.updatedAt = tx.now
        try await tx.query("""
            UPDATE orders SET status = \(o.status.rawValue), payment_intent_id = \(o.payment?.intentId), payment_client_secret = \(o.payment?.clientSecret),
                payment_status = \(o.payment?.status), refunded_amount = \(o.refunded.amount), carrier = \(o.carrier),
                tracking_number = \(o.trackingNumber), cancel_reason = \(o.cancelReason), stock_confirmed = \(o.stockConfirmed),
                version = \(updated.version), updated_at = \(updated.updatedAt)
            WHERE id = \(o.id)
            """)
        return updated
    }

    func record(_ change: OrderChange, of id: UUID, in tx: Transaction) async throws {
        try await tx.query("""
            INSERT INTO order_history (order_id, at, status, event, actor_id, note)
            VALUES (\(id), \(change.at), \(change.status), \(change.event), \(change.actorId), \(change.note))
            """)
    }

    /// The order's changes, oldest first (bounded: an order's life is a handful of steps).
    func history(of id: UUID, in tx: Transaction) async throws -> [OrderChange] {
        let rows = try await tx.query("""
            SELECT status, at, event, actor_id, note FROM order_history WHERE order_id = \(id) ORDER BY id LIMIT 200
            """)
        var changes: [OrderChange] = []
        for try await (status, at, event, actor, note) in rows.decode((String, Date, String, UUID?, String?).self) {
            changes.append(OrderChange(status: status, at: at, event: event, actorId: actor, note: note))
        }
        return changes
    }

    /// The caller's orders as buyer, as vendor, or both, optionally of one status, newest first.
    /// Each side is an index range scan (limit + 1 rows), merged; the extra row tells whether
    /// another page exists.
    func page(participant: UUID, role: OrderRole?, status: OrderStatus?, _ page: KeysetPageRequest, in tx: Transaction) async throws -> Page<OrderView> {
        let asBuyer = role != .vendor
        let asVendor = role != .buyer
        let status = status?.rawValue
        let rows = try await tx.query("""
            SELECT \(unescaped: Self.columns) FROM (
                (SELECT * FROM orders WHERE \(asBuyer) AND buyer_id = \(participant) AND (\(status)::text IS NULL OR status = \(status))
                   AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
                UNION
                (SELECT * FROM orders WHERE \(asVendor) AND vendor_id = \(participant) AND (\(status)::text IS NULL OR status = \(status))
                   AND \(after: page)
                 ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit))
            ) mine ORDER BY \(unescaped: page.order.orderBy) LIMIT \(page.fetchLimit)
            """)
        let items = try await Self.decode(rows).map { OrderView($0, history: []) }
        return page.page(items) { KeysetCursor(values: [.time($0.createdAt)], id: $0.id) }
    }

    static func decode(_ rows: PostgresRowSequence) async throws -> [OrderRecord] {
        var result: [OrderRecord] = []
        for try await row in rows {
            let c = row.makeRandomAccess()
            let statusText = try c[3].decode(String.self)
            guard let status = OrderStatus(rawValue: statusText) else { throw OrdersStoreError.unknownStatus(statusText) }
            let currency = try Currency(code: try c[9].decode(String.self))
            func money(_ index: Int) throws -> Money { Money(amount: try c[index].decode(Int64.self), currency: currency) }
            let address = try JSONDecoder().decode(ShippingAddress.self, from: Data(try c[12].decode(String.self).utf8))
            let intent = try c[14].decode(String?.self)
            result.append(OrderRecord(
                id: try c[0].decode(UUID.self), buyerId: try c[1].decode(UUID.self), vendorId: try c[2].decode(UUID.self), status: status,
                listingId: try c[4].decode(UUID.self), listingTitle: try c[5].decode(String.self), quantity: Int(try c[6].decode(Int32.self)),
                unitPrice: try money(7), total: try money(8), commissionBps: Int(try c[10].decode(Int32.self)), commission: try money(11),
                shippingAddress: address, paymentDueAt: try c[13].decode(Date.self),
                payment: intent.map { PaymentView(intentId: $0, clientSecret: try? c[15].decode(String?.self), status: (try? c[16].decode(String?.self)) ?? "unknown") },
                refunded: try money(17), carrier: try c[18].decode(String?.self), trackingNumber: try c[19].decode(String?.self),
                cancelReason: try c[20].decode(String?.self), stockConfirmed: try c[21].decode(Bool.self), version: Int(try c[22].decode(Int32.self)),
                createdAt: try c[23].decode(Date.self), updatedAt: try c[24].decode(Date.self)))
        }
        return result
    }
}

/// Which side of the caller's orders a list shows.
enum OrderRole: String, CaseIterable, Sendable {
    case buyer, vendor
}

/// A row this build cannot read: a bug or a database ahead of the code, never the client's fault.
enum OrdersStoreError: Error, Equatable {
    case unknownStatus(String)
}
