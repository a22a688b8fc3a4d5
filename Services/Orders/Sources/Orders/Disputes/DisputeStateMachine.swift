import Foundation
import Platform

/// Where a dispute is. `open` and `escalated` are live (the order is `disputed`, the vendor's money
/// frozen); `withdrawn` and `resolved` are final.
enum DisputeStatus: String, CaseIterable, Sendable, Codable {
    case open
    /// 14 days without a decision: the admins' to decide now.
    case escalated
    /// The buyer took it back; the order is `delivered` again.
    case withdrawn
    /// Decided by a moderator or an admin (or by the buyer's bank, a chargeback lost).
    case resolved

    var isLive: Bool { self == .open || self == .escalated }
}

/// Why the buyer disputes the order.
enum DisputeReason: String, CaseIterable, Sendable, Codable {
    case notAsDescribed = "not_as_described"
    case damaged
    case notReceived = "not_received"
    case health
    case other
}

/// What a resolution does with the money.
enum DisputeOutcome: String, CaseIterable, Sendable, Codable {
    /// Everything to the vendor: the order is `received`.
    case release
    /// All, or a part, back to the buyer (the rest released): the order is `refunded`.
    case refund
}

/// What happens to a dispute. Raw values read in the 409's sentence ("A dispute that is resolved
/// cannot be withdrawn.").
enum DisputeEvent: String, CaseIterable, Sendable {
    case addEvidence = "given evidence"
    case withdraw = "withdrawn"
    case escalate = "escalated"
    case resolve = "resolved"
}

/// The dispute's transition table: pure, no I/O, no clock. The escalation timer on a dispute that
/// is no longer open is stale and changes nothing.
enum DisputeStateMachine {
    static func transition(from state: DisputeStatus, on event: DisputeEvent) throws -> DisputeStatus {
        switch (state, event) {
        case (.open, .addEvidence), (.escalated, .addEvidence):
            state
        case (.open, .withdraw), (.escalated, .withdraw):
            .withdrawn
        case (.open, .escalate):
            .escalated
        case (.open, .resolve), (.escalated, .resolve):
            .resolved
        default:
            throw Problem.invalidTransition(event.rawValue, from: state.rawValue, resource: "dispute")
        }
    }
}

/// Who may do what to a dispute: the order's buyer and vendor, and staff. `DisputePolicyTests`
/// holds it as a role × party × action matrix.
enum DisputePolicy {
    enum Action: CaseIterable, Sendable {
        case read
        case addEvidence
        case withdraw
        case resolve
    }

    enum Party: Sendable, Equatable {
        case buyer, vendor, moderator, admin
    }

    /// Visibility first (a stranger's dispute does not exist: 404), then the action (403). An
    /// escalated dispute is the admins' to resolve.
    @discardableResult
    static func authorize(_ action: Action, buyerId: UUID, vendorId: UUID, status: DisputeStatus, by caller: Principal?) throws -> Party {
        guard let caller else { throw DisputesError.disputeNotFound }
        let party: Party
        if caller.userId == buyerId {
            party = .buyer
        } else if caller.userId == vendorId {
            party = .vendor
        } else if caller.has(.admin) {
            party = .admin
        } else if caller.has(.moderator) {
            party = .moderator
        } else {
            throw DisputesError.disputeNotFound
        }
        switch (action, party) {
        case (.read, _), (.addEvidence, _), (.withdraw, .buyer), (.resolve, .admin):
            return party
        case (.resolve, .moderator):
            guard status != .escalated else { throw DisputesError.notYours("This dispute was escalated: an admin decides it now.") }
            return party
        case (.withdraw, _):
            throw DisputesError.notYours("Only the order's buyer may withdraw the dispute.")
        case (.resolve, _):
            throw DisputesError.notYours("Only a moderator or an admin resolves a dispute.")
        }
    }
}

/// Every way a dispute request can be refused, mapped to its problem in one place.
enum DisputesError: Error, ProblemConvertible, Equatable {
    case disputeNotFound
    case notYours(String)
    /// The buyer's bank has a chargeback open on the payment: its decision comes first.
    case chargebackOpen
    /// Only the buyer opens a dispute.
    case notTheBuyer
    case refundTooLarge(remaining: Money)

    var problem: Problem {
        switch self {
        case .disputeNotFound:
            Problem(.notFound, "No dispute with this id.")
        case .notYours(let detail):
            Problem(.forbidden, detail)
        case .chargebackOpen:
            Problem(.conflict, "The buyer's bank has a chargeback open on this payment; the dispute waits for its decision.",
                    typeSlug: "chargeback-open")
        case .notTheBuyer:
            Problem(.forbidden, "Only the order's buyer may open a dispute.")
        case .refundTooLarge(let remaining):
            Problem.validation([FieldError("refundAmount.amount", "must be at most \(remaining.amount), what remains of the payment")])
        }
    }
}
