import Contracts
import Foundation
import Platform

/// Reviews after receipt: each party writes one while the order is `received` (the 7-day
/// window); the second one publishes both and completes the order; the window's timer publishes
/// whatever was written. Published buyers' reviews feed the vendor's rating (`vendor_ratings`,
/// stated to listings by `vendor.rating_changed`).
struct ReviewWorkflow: Sendable {
    let orders: OrderWorkflow
    let reviews = ReviewRepository()
    var orderRows: OrderRepository { orders.orders }

    /// The caller's review of the other party: 409 outside the window, or a second time.
    func write(order orderId: UUID, rating: Int, text: String, by caller: Principal, in tx: Transaction) async throws -> ReviewView {
        guard let order = try await orderRows.lock(orderId, in: tx) else { throw OrdersError.orderNotFound }
        let party = try OrderPolicy.authorize(.read, buyerId: order.buyerId, vendorId: order.vendorId, by: caller)
        guard party != .staff else { throw ReviewsError.notYours("Only the order's buyer and vendor review it.") }
        guard order.status == .received else { throw Problem.invalidTransition("reviewed", from: order.status.phrase, resource: "order") }
        let role: ReviewRole = party == .buyer ? .buyer : .vendor
        let now = tx.now
        let review = ReviewRecord(
            id: UUID.v7(now: now), orderId: order.id, authorId: caller.userId, subjectId: role == .buyer ? order.vendorId : order.buyerId,
            authorRole: role, rating: rating, text: text, status: .pending, reply: nil, repliedAt: nil, removedReason: nil, removedBy: nil,
            version: 1, createdAt: now, publishedAt: nil, updatedAt: now)
        guard try await reviews.insert(review, in: tx) else { throw ReviewsError.alreadyReviewed }
        let written = try await reviews.of(order: order.id, in: tx)
        if ReviewVisibility.publishes(written: written.count, windowClosed: false) {
            try await publish(written.map(\.0), in: tx)
            _ = try await orders.apply(.reviewsWritten, to: order, input: OrderInput(actorId: caller.userId), in: tx)
        }
        guard let (saved, name) = try await reviews.load(review.id, in: tx) else { throw ReviewsError.reviewNotFound }
        return ReviewView(saved, authorName: name)
    }

    /// The order's reviews the caller may see (the double-blind rule).
    func ofOrder(_ orderId: UUID, by caller: Principal, in tx: Transaction) async throws -> [ReviewView] {
        guard let order = try await orderRows.load(orderId, in: tx) else { throw OrdersError.orderNotFound }
        if try OrderPolicy.authorize(.read, buyerId: order.buyerId, vendorId: order.vendorId, by: caller) == .staff {
            try await StaffReads.record(caller, read: "order reviews", id: orderId, in: tx)
        }
        return try await reviews.of(order: orderId, in: tx)
            .filter { ReviewVisibility.visible(status: $0.0.status, authorId: $0.0.authorId, to: caller) }
            .map { ReviewView($0.0, authorName: $0.1) }
    }

    /// The window closed: the order completes and what was written is published.
    func windowClosed(_ timer: OrderTimerPayload, in tx: Transaction) async throws {
        guard let order = try await orderRows.lock(timer.orderId, in: tx),
              try await orders.applyIfAllowed(.reviewWindowClosed, to: order, in: tx) != nil else { return }
        let written = try await reviews.of(order: order.id, in: tx).map(\.0)
        if ReviewVisibility.publishes(written: written.count, windowClosed: true) { try await publish(written, in: tx) }
    }

    /// Publishes the order's pending reviews at once; a buyer's adds to the vendor's rating.
    private func publish(_ written: [ReviewRecord], in tx: Transaction) async throws {
        let now = tx.now
        for review in written where review.status == .pending {
            var published = review
            published.status = try ReviewStateMachine.transition(from: review.status, on: .publish)
            published.publishedAt = now
            _ = try await reviews.update(published, in: tx)
            try await Outbox.emit(ReviewEvents.published, ReviewPublishedV1(
                reviewId: review.id, orderId: review.orderId, authorId: review.authorId, subjectId: review.subjectId,
                authorRole: review.authorRole.rawValue, rating: review.rating, publishedAt: now), in: tx)
            if review.authorRole == .buyer { try await rate(vendor: review.subjectId, add: review.rating, count: 1, in: tx) }
        }
    }

    /// The reviewed vendor answers a buyer's published review, once.
    func reply(to id: UUID, text: String, by caller: Principal, in tx: Transaction) async throws -> ReviewView {
        guard let (current, name) = try await reviews.load(id, lock: true, in: tx),
              ReviewVisibility.visible(status: current.status, authorId: current.authorId, to: caller) else { throw ReviewsError.reviewNotFound }
        guard current.authorRole == .buyer, current.subjectId == caller.userId else {
            throw ReviewsError.notYours("Only the reviewed vendor replies to a review.")
        }
        var review = current
        review.status = try ReviewStateMachine.transition(from: current.status, on: .reply)
        guard current.reply == nil else { throw ReviewsError.alreadyReplied }
        review.reply = text
        review.repliedAt = tx.now
        return ReviewView(try await reviews.update(review, in: tx), authorName: name)
    }

    /// A moderator takes a published review down, with the reason recorded (the audit log and the row).
    func remove(_ id: UUID, reason: String, by caller: Principal, in tx: Transaction) async throws -> ReviewView {
        guard let (current, name) = try await reviews.load(id, lock: true, in: tx) else { throw ReviewsError.reviewNotFound }
        var review = current
        review.status = try ReviewStateMachine.transition(from: current.status, on: .remove)
        review.removedReason = reason
        review.removedBy = caller.userId
        try await StaffReads.record(caller, read: "review removed", id: id, reason: reason, in: tx)
        if review.authorRole == .buyer { try await rate(vendor: review.subjectId, add: -review.rating, count: -1, in: tx) }
        return ReviewView(try await reviews.update(review, in: tx), authorName: name)
    }

    /// The vendor's public reviews with the summary.
    func vendorReviews(_ vendor: UUID, _ page: KeysetPageRequest, in tx: Transaction) async throws -> VendorReviewsPage {
        let found = try await reviews.page(vendor: vendor, page, in: tx)
        return VendorReviewsPage(items: found.items, nextCursor: found.nextCursor, summary: try await reviews.summary(of: vendor, in: tx))
    }

    private func rate(vendor: UUID, add rating: Int, count: Int, in tx: Transaction) async throws {
        let (sum, total, version) = try await reviews.rate(vendor: vendor, add: rating, count: count, in: tx)
        try await Outbox.emit(ReviewEvents.ratingChanged, VendorRatingChangedV1(
            vendorId: vendor, ratingSum: sum, ratingCount: total, version: version, changedAt: tx.now), in: tx)
    }
}
