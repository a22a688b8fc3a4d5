import Foundation
import Platform

/// Who may do what to a listing. Every listing handler asks it; nothing else decides.
struct ListingPolicy: Sendable {
    enum Action: CaseIterable, Sendable {
        /// Read the listing.
        case read
        /// Edit, publish, close, delete: the vendor's own work.
        case manage
        /// Approve, reject, remove.
        case moderate
    }

    /// Visibility first: a listing buyers cannot see does not exist for strangers (404). Then the
    /// action: seen but not theirs to do is 403.
    static func authorize(_ action: Action, status: ListingStatus, hidden: Bool, vendorId: UUID, by caller: Principal?) throws {
        let owner = caller.map { $0.userId == vendorId && $0.has(.vendor) } ?? false
        let staff = caller?.isStaff == true
        let publiclyVisible = status == .published && !hidden
        guard publiclyVisible || owner || staff else { throw ListingsError.listingNotFound }
        switch action {
        case .read: return
        case .manage: guard owner else { throw ListingsError.notYourListing }
        case .moderate: guard staff else { throw ListingsError.staffOnly }
        }
    }
}
