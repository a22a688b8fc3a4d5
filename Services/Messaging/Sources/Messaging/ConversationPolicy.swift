import Foundation
import Platform

/// Every way a messaging request about a conversation can be refused, mapped to its problem.
enum MessagingError: Error, ProblemConvertible, Equatable {
    /// No such conversation, or not the caller's to see (never 403: nothing leaks).
    case conversationNotFound
    case messageNotFound
    /// No listing buyers can see with this id (or messaging has not heard of it yet).
    case listingNotFound
    /// No order of the caller's with this id.
    case orderNotFound
    case userNotFound
    case reportNotFound
    case notBlocked
    /// Either party blocked the other. The same answer whichever did, so it tells no one who.
    case blocked
    case notYours(String)
    /// Staff read a conversation nobody reported only with a reason (it goes into the audit log).
    case reasonRequired

    var problem: Problem {
        switch self {
        case .conversationNotFound:
            Problem(.notFound, "No conversation with this id.")
        case .messageNotFound:
            Problem(.notFound, "No message with this id in this conversation.")
        case .listingNotFound:
            Problem(.notFound, "No listing with this id.", typeSlug: "listing-not-found")
        case .orderNotFound:
            Problem(.notFound, "No order of yours with this id.", typeSlug: "order-not-found")
        case .userNotFound:
            Problem(.notFound, "No user with this id.", typeSlug: "user-not-found")
        case .reportNotFound:
            Problem(.notFound, "No report with this id.")
        case .notBlocked:
            Problem(.notFound, "You have not blocked this user.")
        case .blocked:
            Problem(.forbidden, "You cannot write to this conversation.", typeSlug: "blocked")
        case .notYours(let detail):
            Problem(.forbidden, detail)
        case .reasonRequired:
            Problem(.forbidden, "Reading a conversation nobody reported needs a reason, which is kept in the audit log.",
                    typeSlug: "reason-required")
        }
    }
}

/// Who may do what to a conversation: its two participants, and staff who read it (audited).
/// Every messaging handler about a conversation asks it; `ConversationPolicyTests` holds it as a
/// role × party × action matrix.
enum ConversationPolicy {
    enum Action: CaseIterable, Sendable {
        /// Its messages, as a participant sees them.
        case read
        case post
        case markRead
        /// Soft-delete a message: its author only.
        case deleteMessage
        case report
        /// The moderation desk's read: everything, originals included; audited.
        case staffRead
    }

    /// The caller's part in the conversation.
    enum Party: Sendable, Equatable {
        case buyer, vendor, staff
    }

    /// What the decision needs to know about the conversation.
    struct Facts: Sendable {
        var buyerId: UUID
        var vendorId: UUID
        /// Who of the two has blocked the other (either, both or neither).
        var blockers: Set<UUID> = []
        /// Someone reported it (or a message in it) and the report is open.
        var reported = false
        /// The author of the message acted on (`deleteMessage`).
        var messageAuthorId: UUID?
    }

    /// Visibility first: a conversation the caller is not in does not exist for them (404); staff
    /// see one only through the desk. Then the action: seen but not theirs to do is 403.
    @discardableResult
    static func authorize(_ action: Action, _ facts: Facts, by caller: Principal?, reason: String? = nil) throws -> Party {
        guard let caller else { throw MessagingError.conversationNotFound }
        let isStaff = caller.has(.moderator) || caller.has(.admin)
        if action == .staffRead {
            guard isStaff else { throw MessagingError.notYours("Only moderators and admins use the moderation desk.") }
            guard facts.reported || !(reason ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw MessagingError.reasonRequired
            }
            return .staff
        }
        let party: Party
        let other: UUID
        if caller.userId == facts.buyerId {
            (party, other) = (.buyer, facts.vendorId)
        } else if caller.userId == facts.vendorId {
            (party, other) = (.vendor, facts.buyerId)
        } else {
            throw MessagingError.conversationNotFound
        }
        let blockedByOther = facts.blockers.contains(other)
        let blockedOther = facts.blockers.contains(caller.userId)
        switch action {
        case .read, .markRead:
            // The blocked one cannot open the blocker's conversations; the blocker still can.
            if blockedByOther { throw MessagingError.blocked }
        case .post:
            if blockedByOther || blockedOther { throw MessagingError.blocked }
        case .deleteMessage:
            guard facts.messageAuthorId == caller.userId else { throw MessagingError.notYours("Only a message's author may delete it.") }
        case .report, .staffRead:
            // Reporting stays open to both, blocked or not: abuse is reported after a block.
            break
        }
        return party
    }
}
