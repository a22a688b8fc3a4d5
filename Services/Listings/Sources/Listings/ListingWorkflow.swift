import Contracts
import Foundation
import Platform
import PostgresNIO

/// What vendors and moderators do to listings. Each operation loads the listing (locked), asks the
/// policy, runs the state machine, and persists, emits and notifies in one transaction.
struct ListingWorkflow: Sendable {
    let client: PostgresClient
    let repository: ListingRepository
    let categories: CategoryCatalog
    let visibility: Visibility
    /// How many of a vendor's first published listings a moderator reviews.
    let reviewFirstListings: Int

    // MARK: Vendor

    func create(_ input: ListingInput, by caller: Principal, _ context: OperationContext) async throws -> ListingRecord {
        let content = try ListingContent.validate(input, categories: try await categories.tree(context))
        let id = UUID.v7(now: context.now)
        return try await Database.transaction(client, context) { tx in
            try await repository.insert(id: id, vendor: caller.userId, content, in: tx)
            tx.logger.info("listing created", metadata: ["listing.id": "\(id)"])
            return try await repository.reload(id, in: tx)
        }
    }

    func edit(_ id: UUID, patch: JSONValue, precondition: Versioning.Precondition, by caller: Principal,
              _ context: OperationContext) async throws -> ListingRecord {
        let tree = try await categories.tree(context)
        return try await Database.transaction(client, context) { tx in
            let record = try await load(id, for: .manage, by: caller, in: tx)
            try Versioning.check(precondition, current: record.version)
            var (status, effects) = try ListingStateMachine.transition(from: record.status, on: .edit)
            let merged = JSONMergePatch.apply(patch, to: ListingContent.editable(record))
            let content = try ListingContent.validate(try JSONBody.decode(ListingInput.self, from: Data(try JSONWriter.encode(merged))),
                                                      categories: tree)
            guard content.quantity >= record.reserved else {
                throw Problem.validation([FieldError("quantity", "must be at least \(record.reserved), the units held or sold by orders")])
            }
            let available = content.quantity - record.reserved
            // A published listing that changes what buyers see in a reviewed category is reviewed again.
            if status == .published, content.category.requiresReview, content.isMaterialChange(from: record) {
                (status, effects) = try ListingStateMachine.transition(from: status, on: .returnToReview)
            } else if status == .published, available == 0 {
                (status, effects) = try ListingStateMachine.transition(from: status, on: .sellOut)
            } else if status == .sold, available > 0 {
                (status, effects) = try ListingStateMachine.transition(from: status, on: .restock)
            }
            guard try await repository.saveEdit(record, content, status: status, available: available, in: tx) else {
                throw Versioning.mismatch(current: try await repository.reload(id, in: tx).version)
            }
            return try await finish(id, effects, in: tx)
        }
    }

    /// Publishes a draft, a rejected listing or a closed one (reopening it): straight to
    /// `published`, or to `pending_review` when the category, the vendor's first listings, or an
    /// earlier rejection call for a moderator.
    func publish(_ id: UUID, precondition: Versioning.Precondition?, by caller: Principal, _ context: OperationContext) async throws -> ListingRecord {
        try await Database.transaction(client, context) { tx in
            let record = try await load(id, for: .manage, by: caller, in: tx)
            try Versioning.check(precondition, current: record.version)
            _ = try ListingStateMachine.transition(from: record.status, on: .publish)  // 409 before the vendor's standing
            guard caller.emailVerified else { throw ListingsError.emailNotVerified }
            guard let entitlement = try await Entitlement.lock(vendor: record.vendorId, in: tx), entitlement.mayPublish else {
                throw ListingsError.subscriptionRequired
            }
            guard try await repository.quotaUsage(vendor: record.vendorId, in: tx) < entitlement.listingQuota else {
                throw ListingsError.quotaExceeded(quota: entitlement.listingQuota)
            }
            guard record.quantityAvailable > 0 else {
                throw Problem.validation([FieldError("quantity", "must be at least 1 to publish")])
            }
            let tree = try await categories.tree(tx.context)
            let published = try await repository.everPublished(vendor: record.vendorId, in: tx)
            let reviewed = tree.category(id: record.categoryId)?.requiresReview == true || record.status == .rejected
                || published < reviewFirstListings
            let (status, effects) = try ListingStateMachine.transition(from: record.status, on: reviewed ? .submitForReview : .publish)
            try await repository.setStatus(id, to: status, in: tx)
            if status == .published { try await visibility.refresh(vendor: record.vendorId, in: tx) }
            tx.logger.info("listing submitted", metadata: ["listing.id": "\(id)", "listing.status": "\(status.rawValue)"])
            return try await finish(id, effects, in: tx)
        }
    }

    func close(_ id: UUID, precondition: Versioning.Precondition?, by caller: Principal, _ context: OperationContext) async throws -> ListingRecord {
        try await Database.transaction(client, context) { tx in
            let record = try await load(id, for: .manage, by: caller, in: tx)
            try Versioning.check(precondition, current: record.version)
            let (status, effects) = try ListingStateMachine.transition(from: record.status, on: .close)
            try await repository.setStatus(id, to: status, in: tx)
            return try await finish(id, effects, in: tx)
        }
    }

    func delete(_ id: UUID, precondition: Versioning.Precondition?, by caller: Principal, _ context: OperationContext) async throws {
        try await Database.transaction(client, context) { tx in
            let record = try await load(id, for: .manage, by: caller, in: tx)
            try Versioning.check(precondition, current: record.version)
            _ = try ListingStateMachine.transition(from: record.status, on: .delete)
            try await repository.delete(id, in: tx)
            try await ListingChanges.listing(id, in: tx)
            tx.logger.info("listing deleted", metadata: ["listing.id": "\(id)"])
        }
    }

    // MARK: Moderators

    enum Decision: String, Sendable {
        case approve = "approved", reject = "rejected", remove = "removed"
        var event: ListingEvent {
            switch self {
            case .approve: .approve
            case .reject: .reject
            case .remove: .remove
            }
        }
    }

    /// Approves, rejects or removes, recording who decided, when and why, and telling the vendor
    /// (`listing.moderated`, which messaging turns into a notification).
    func decide(_ decision: Decision, _ id: UUID, reason: String?, by moderator: Principal, _ context: OperationContext) async throws -> ListingRecord {
        try await Database.transaction(client, context) { tx in
            let record = try await load(id, for: .moderate, by: moderator, in: tx)
            let (status, effects) = try ListingStateMachine.transition(from: record.status, on: decision.event)
            try await repository.setStatus(id, to: status, rejectionReason: decision == .reject ? reason : nil, in: tx)
            if effects.contains(.recordDecision) {
                try await tx.query("""
                    INSERT INTO moderation_decisions (id, listing_id, moderator_id, decision, reason, decided_at)
                    VALUES (\(UUID.v7(now: tx.now)), \(id), \(moderator.userId), \(decision.rawValue), \(reason), \(tx.now))
                    """)
                try await Outbox.emit(ListingEvents.moderated, ListingModeratedV1(
                    listingId: id, vendorId: record.vendorId, title: record.title, decision: decision.rawValue, reason: reason,
                    moderatorId: moderator.userId, decidedAt: tx.now), in: tx)
            }
            if status == .published { try await visibility.refresh(vendor: record.vendorId, in: tx) }
            tx.logger.info("listing moderated", metadata: ["listing.id": "\(id)", "moderation.decision": "\(decision.rawValue)"])
            return try await finish(id, effects.filter { $0 != .recordDecision }, in: tx)
        }
    }

    // MARK: Shared steps

    /// The listing, locked, if the caller may see it and do `action` (else 404 or 403).
    private func load(_ id: UUID, for action: ListingPolicy.Action, by caller: Principal, in tx: Transaction) async throws -> ListingRecord {
        guard let record = try await repository.lock(id, in: tx) else { throw ListingsError.listingNotFound }
        try ListingPolicy.authorize(action, status: record.status, hidden: record.isHidden, vendorId: record.vendorId, by: caller)
        return record
    }

    /// Emits what the transition calls for, tells the replicas, and answers the listing as it is now.
    func finish(_ id: UUID, _ effects: [ListingEffect], in tx: Transaction) async throws -> ListingRecord {
        let record = try await repository.reload(id, in: tx)
        let snapshot = record.snapshot(at: tx.now)
        for effect in effects {
            switch effect {
            case .emitPublished: try await Outbox.emit(ListingEvents.published, snapshot, in: tx)
            case .emitUpdated: try await Outbox.emit(ListingEvents.updated, snapshot, in: tx)
            case .emitWithdrawn: try await Outbox.emit(ListingEvents.withdrawn, snapshot, in: tx)
            case .emitSold: try await Outbox.emit(ListingEvents.sold, snapshot, in: tx)
            case .emitRemoved: try await Outbox.emit(ListingEvents.removed, snapshot, in: tx)
            case .recordDecision, .deleteRow: break
            }
        }
        try await ListingChanges.listing(id, in: tx)
        return record
    }
}
