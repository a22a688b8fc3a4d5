import Foundation
import Platform

/// Proration to the second, in whole minor units, with no unit created or lost.
///
/// A plan's price over its period is spread by the cumulative floor `⌊price × elapsed / length⌋`:
/// the charge for a stretch of the period is the difference of that at its ends. However a period
/// is cut (one plan change or many), the stretches of one plan add up to exactly its price, and
/// each is never negative.
enum Proration {
    /// The part of `price` earned from the period's start up to `at` (clamped to the period).
    static func earned(_ price: Money, periodStart: Date, periodEnd: Date, at: Date) -> Money {
        let length = seconds(from: periodStart, to: periodEnd)
        guard length > 0 else { return price }
        let elapsed = min(max(seconds(from: periodStart, to: at), 0), length)
        // price ≤ 2^63 and elapsed ≤ length: the product fits in 128 bits, the quotient in 64.
        let (high, low) = UInt64(max(price.amount, 0)).multipliedFullWidth(by: UInt64(elapsed))
        let (quotient, _) = UInt64(length).dividingFullWidth((high, low))
        return Money(amount: Int64(quotient), currency: price.currency)
    }

    /// What is left of `price` from `at` to the period's end: never negative, never above the price.
    static func unused(_ price: Money, periodStart: Date, periodEnd: Date, at: Date) -> Money {
        Money(amount: price.amount - earned(price, periodStart: periodStart, periodEnd: periodEnd, at: at).amount, currency: price.currency)
    }

    /// An upgrade at `at`: a credit for the old plan's unused time and a debit for the new plan's
    /// remaining time. Both in the plans' currency (they must share it).
    static func change(from old: Money, to new: Money, periodStart: Date, periodEnd: Date, at: Date) throws(MoneyError)
        -> (credit: Money, debit: Money) {
        guard old.currency == new.currency else { throw .currencyMismatch(old.currency, new.currency) }
        return (unused(old, periodStart: periodStart, periodEnd: periodEnd, at: at),
                unused(new, periodStart: periodStart, periodEnd: periodEnd, at: at))
    }

    /// Whole seconds between two instants (proration is to the second, not finer).
    static func seconds(from start: Date, to end: Date) -> Int64 {
        Int64((end.timeIntervalSince1970).rounded(.down)) - Int64((start.timeIntervalSince1970).rounded(.down))
    }
}
