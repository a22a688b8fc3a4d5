import Platform

/// Where a listing is in its life. A `published` one may still be hidden (see `HiddenReason`):
/// visibility is the vendor's standing, not the listing's state.
enum ListingStatus: String, CaseIterable, Sendable, Codable {
    case draft
    case pendingReview = "pending_review"
    case published
    case closed
    case sold
    case rejected
    case removed

    /// What counts against the vendor's listing quota.
    static let countedByQuota: [ListingStatus] = [.published, .pendingReview]
}

/// What happens to a listing. Raw values read as past participles, for the 409's sentence
/// ("A listing that is removed cannot be edited.").
enum ListingEvent: String, CaseIterable, Sendable {
    case edit = "edited"
    case publish = "published"
    case submitForReview = "submitted for review"
    case approve = "approved"
    case reject = "rejected"
    case returnToReview = "sent back to review"
    case close = "closed"
    case remove = "removed"
    case sellOut = "sold out"
    case restock = "restocked"
    case delete = "deleted"
}

/// What a transition obliges the handler to do, in the same transaction.
enum ListingEffect: Equatable, Sendable {
    /// `listing.published`: buyers can find it (if the vendor's standing lets them).
    case emitPublished
    /// `listing.updated`: a published listing changed.
    case emitUpdated
    /// `listing.withdrawn`: it left the public catalogue (closed, back to review).
    case emitWithdrawn
    case emitSold
    case emitRemoved
    /// A moderator decided: recorded (who, when, why) and `listing.moderated` for the vendor.
    case recordDecision
    case deleteRow
}

/// The listing's transition table: pure, no I/O, no clock.
enum ListingStateMachine {
    static func transition(from state: ListingStatus, on event: ListingEvent) throws -> (ListingStatus, [ListingEffect]) {
        switch (state, event) {
        case (.draft, .edit), (.pendingReview, .edit), (.closed, .edit), (.rejected, .edit):
            (state, [])
        case (.published, .edit), (.sold, .edit):
            (state, [.emitUpdated])
        case (.draft, .publish), (.closed, .publish), (.rejected, .publish):
            (.published, [.emitPublished])
        case (.draft, .submitForReview), (.closed, .submitForReview), (.rejected, .submitForReview):
            (.pendingReview, [])
        case (.pendingReview, .approve):
            (.published, [.emitPublished, .recordDecision])
        case (.pendingReview, .reject):
            (.rejected, [.recordDecision])
        case (.published, .returnToReview):
            (.pendingReview, [.emitWithdrawn])
        case (.published, .close):
            (.closed, [.emitWithdrawn])
        case (.sold, .close):
            (.closed, [])
        case (.published, .remove), (.sold, .remove), (.closed, .remove):
            (.removed, [.emitRemoved, .recordDecision])
        case (.published, .sellOut):
            (.sold, [.emitSold])
        case (.sold, .restock):
            (.published, [.emitPublished])
        case (.draft, .delete), (.closed, .delete), (.rejected, .delete):
            (state, [.deleteRow])
        default:
            throw Problem.invalidTransition(event.rawValue, from: state.rawValue.replacingOccurrences(of: "_", with: " "), resource: "listing")
        }
    }
}
