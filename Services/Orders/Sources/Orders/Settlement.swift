import Platform

/// How an order's money is divided when it leaves escrow: what goes back to the buyer, what
/// the marketplace keeps as commission, and what the vendor is paid. Orders computes it once and
/// states it in `order.received`, `order.canceled` and `dispute.resolved`; billing posts exactly
/// these amounts to the ledger (and checks that they add up).
struct Settlement: Sendable, Equatable, Codable {
    var refund: Money
    var commission: Money
    var vendor: Money

    /// The order as placed: the price of `quantity` units and the commission on it at the
    /// vendor's plan rate (rounded half away from zero, so a half cent goes to the marketplace).
    static func placed(unitPrice: Money, quantity: Int, commissionBps: Int) throws -> Settlement {
        let total = try unitPrice.multiplied(by: quantity)
        let (commission, vendor) = try total.split(basisPoints: commissionBps)
        return Settlement(refund: .zero(total.currency), commission: commission, vendor: vendor)
    }

    /// `total` settled with `refund` going back to the buyer (nothing, part, or all of it). The
    /// commission is taken only on what the vendor keeps: refunding a part refunds the
    /// marketplace's share of that part too. The three always add up to the total.
    static func settling(_ total: Money, refund: Money, commissionBps: Int) throws -> Settlement {
        guard refund.currency == total.currency else { throw MoneyError.currencyMismatch(total.currency, refund.currency) }
        guard !refund.isNegative, refund.amount <= total.amount else { throw SettlementError.refundOutOfRange }
        let kept = try total.subtracting(refund)
        let (commission, vendor) = try kept.split(basisPoints: commissionBps)
        return Settlement(refund: refund, commission: commission, vendor: vendor)
    }

    var total: Money { Money(amount: refund.amount + commission.amount + vendor.amount, currency: refund.currency) }
}

enum SettlementError: Error, Equatable {
    /// A refund below zero or above what was paid.
    case refundOutOfRange
}
