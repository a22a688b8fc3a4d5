import Foundation
import Platform

/// Where a review is: `pending` (written, hidden: double blind), `published` (both written, or
/// the window closed), `removed` (by a moderator, with a reason).
enum ReviewStatus: String, CaseIterable, Sendable, Codable {
    case pending, published, removed
}

/// Which side wrote it: the buyer reviews the vendor, the vendor the buyer.
enum ReviewRole: String, CaseIterable, Sendable, Codable {
    case buyer, vendor
}

enum ReviewEvent: String, CaseIterable, Sendable {
    case publish = "published"
    case reply = "replied to"
    case remove = "removed"
}

/// The review's transition table: pure. Publishing happens to both of an order's reviews at once
/// (the second is written, or the window closes); a reply is once, on a published review.
enum ReviewStateMachine {
    static func transition(from state: ReviewStatus, on event: ReviewEvent) throws -> ReviewStatus {
        switch (state, event) {
        case (.pending, .publish): .published
        case (.published, .reply): .published
        case (.published, .remove): .removed
        default: throw Problem.invalidTransition(event.rawValue, from: state.rawValue, resource: "review")
        }
    }
}

/// The double-blind rule, in one place: who sees a review. A published review is public; a
/// pending one only its author sees (not the party it is about, so neither side writes knowing
/// the other's words); a removed one its author and staff.
enum ReviewVisibility {
    static func visible(status: ReviewStatus, authorId: UUID, to viewer: Principal?) -> Bool {
        switch status {
        case .published:
            return true
        case .pending:
            return viewer?.userId == authorId
        case .removed:
            guard let viewer else { return false }
            return viewer.userId == authorId || viewer.has(.moderator) || viewer.has(.admin)
        }
    }

    /// Both reviews are published together: when both have been written, or the window closed.
    static func publishes(written: Int, windowClosed: Bool) -> Bool {
        written == ReviewRole.allCases.count || (windowClosed && written > 0)
    }
}

/// Every way a review request can be refused.
enum ReviewsError: Error, ProblemConvertible, Equatable {
    case reviewNotFound
    /// A vendor id that is not a UUID (any UUID answers, with no reviews when it has none).
    case vendorNotFound
    case alreadyReviewed
    case alreadyReplied
    case notYours(String)

    var problem: Problem {
        switch self {
        case .reviewNotFound:
            Problem(.notFound, "No review with this id.")
        case .vendorNotFound:
            Problem(.notFound, "No vendor with this id.")
        case .alreadyReviewed:
            Problem(.conflict, "You have already reviewed this order.", typeSlug: "already-reviewed")
        case .alreadyReplied:
            Problem(.conflict, "This review already has its reply.", typeSlug: "already-replied")
        case .notYours(let detail):
            Problem(.forbidden, detail)
        }
    }
}
