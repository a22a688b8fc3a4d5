import Foundation
import Platform

/// Who may do what to a subscription and its invoices. Every billing handler asks it.
enum BillingPolicy {
    enum Action: CaseIterable, Sendable {
        /// Read the subscription or its invoices.
        case read
        /// Cancel (the vendor, or an admin on the vendor's behalf).
        case cancel
        /// Resume, pause, change plan or payment method: the vendor's own decisions.
        case manage
        /// Grant a free period.
        case comp
    }

    /// Visibility first: someone else's subscription does not exist for a stranger (404). Then the
    /// action: seen but not theirs to do is 403.
    static func authorize(_ action: Action, vendorId: UUID, by caller: Principal?) throws {
        let owner = caller.map { $0.userId == vendorId && $0.has(.vendor) } ?? false
        let admin = caller?.has(.admin) == true
        guard owner || admin else { throw BillingError.subscriptionNotFound }
        switch action {
        case .read, .cancel: return
        case .manage: guard owner else { throw BillingError.notYourSubscription }
        case .comp: guard admin else { throw BillingError.adminOnly }
        }
    }
}
