import Foundation
import Platform

/// Every way an orders request can be refused, mapped to its problem in one place.
enum OrdersError: Error, ProblemConvertible, Equatable {
    /// No such order, or not the caller's to see (never 403: nothing leaks).
    case orderNotFound
    case listingUnavailable
    case insufficientStock(available: Int)
    case ownListing
    case notYours(String)

    var problem: Problem {
        switch self {
        case .orderNotFound:
            Problem(.notFound, "No order with this id.")
        case .listingUnavailable:
            Problem(.conflict, "This listing cannot be ordered now (it is not published, or it is hidden).", typeSlug: "listing-unavailable")
        case .insufficientStock(let available):
            Problem(.conflict, "Not enough stock: \(available) available.", typeSlug: "insufficient-stock")
        case .ownListing:
            Problem(.forbidden, "You cannot buy your own listing.", typeSlug: "cannot-buy-own-listing")
        case .notYours(let detail):
            Problem(.forbidden, detail)
        }
    }
}

/// Who may do what to an order: its buyer, its vendor, and staff who read (audited). Every
/// orders handler asks it; `OrderPolicyTests` holds it as a role × party × action matrix.
enum OrderPolicy {
    enum Action: CaseIterable, Sendable {
        case read
        case cancel
        case ship
        case deliver
        case receive
    }

    /// The caller's part in the order.
    enum Party: Sendable, Equatable {
        case buyer, vendor, staff
    }

    /// Visibility first: someone else's order does not exist for a stranger (404). Then the action:
    /// seen but not theirs to do is 403. Answers the caller's part (the event a cancel is).
    @discardableResult
    static func authorize(_ action: Action, buyerId: UUID, vendorId: UUID, by caller: Principal?) throws -> Party {
        guard let caller else { throw OrdersError.orderNotFound }
        let party: Party
        if caller.userId == buyerId {
            party = .buyer
        } else if caller.userId == vendorId {
            party = .vendor
        } else if caller.has(.moderator) || caller.has(.admin) {
            party = .staff
        } else {
            throw OrdersError.orderNotFound
        }
        switch (action, party) {
        case (.read, _), (.cancel, .buyer), (.cancel, .vendor), (.receive, .buyer), (.ship, .vendor), (.deliver, .vendor):
            return party
        case (.receive, _):
            throw OrdersError.notYours("Only the order's buyer may confirm receipt.")
        case (.ship, _), (.deliver, _):
            throw OrdersError.notYours("Only the order's vendor may ship it or mark it delivered.")
        case (.cancel, _):
            throw OrdersError.notYours("Only the order's buyer or vendor may cancel it.")
        }
    }
}
