import Contracts
import Foundation
import Platform
import PostgresNIO

/// Why a published listing is not shown to buyers. The listing is kept unchanged and comes back
/// when the cause goes.
enum HiddenReason: String, CaseIterable, Sendable {
    /// The vendor's account is suspended (`user.suspended`).
    case vendorSuspended = "vendor_suspended"
    /// The vendor's subscription does not allow listing (`mayList: false`, or no entitlement).
    case subscriptionInactive = "subscription_inactive"
    /// The vendor's quota was lowered below what is live: the most recently published excess.
    case overQuota = "over_quota"
}

struct Media: Codable, Sendable, Equatable {
    var url: String
    var alt: String?
}

struct Location: Codable, Sendable, Equatable {
    var lat: Double
    var lon: Double
    var city: String
    var region: String?
    var country: String
}

/// A listing as stored, with what its view needs from the projections (category slug, vendor).
struct ListingRecord: Sendable, Equatable {
    var id: UUID
    var vendorId: UUID
    var categoryId: UUID
    var categorySlug: String
    var status: ListingStatus
    var hiddenReason: String?
    var title: String
    var description: String
    var attributes: JSONValue
    var price: Money
    var quantity: Int
    var quantityAvailable: Int
    var location: Location
    var media: [Media]
    var rejectionReason: String?
    var version: Int
    var createdAt: Date
    var updatedAt: Date
    var submittedAt: Date?
    var publishedAt: Date?
    var firstPublishedAt: Date?
    var vendor: VendorView

    var isHidden: Bool { hiddenReason != nil }
    /// Units held or sold by orders.
    var reserved: Int { quantity - quantityAvailable }

    /// The event payload: the listing as it is now.
    func snapshot(at time: Date) -> ListingV1 {
        ListingV1(listingId: id, vendorId: vendorId, category: categorySlug, title: title, status: status.rawValue,
                  hiddenReason: hiddenReason, published: status == .published && !isHidden, priceAmount: price.amount,
                  currency: price.currency.code, quantityAvailable: quantityAvailable, version: version, changedAt: time)
    }
}

/// The vendor as buyers see it on a listing.
struct VendorView: Codable, Sendable, Equatable {
    var id: UUID
    var displayName: String
    var businessName: String?
    /// Average review rating (1–5), null until the vendor has reviews.
    var rating: Double?
    var ratingCount: Int
}

/// `GET /v1/listings/{id}` and every state change's answer.
struct ListingView: Encodable, Sendable {
    var id: UUID
    var vendor: VendorView
    var category: String
    var title: String
    var description: String
    var attributes: JSONValue
    var price: Money
    var quantity: Int
    var quantityAvailable: Int
    var location: Location
    var media: [Media]
    var status: String
    var hiddenReason: String?
    var rejectionReason: String?
    var version: Int
    var createdAt: Date
    var updatedAt: Date
    var publishedAt: Date?

    /// Strangers see a listing only while it is public, so the owner's notes stay with the owner and staff.
    init(_ record: ListingRecord, privileged: Bool) {
        id = record.id
        vendor = record.vendor
        category = record.categorySlug
        title = record.title
        description = record.description
        attributes = record.attributes
        price = record.price
        quantity = record.quantity
        quantityAvailable = record.quantityAvailable
        location = record.location
        media = record.media
        status = record.status.rawValue
        hiddenReason = privileged ? record.hiddenReason : nil
        rejectionReason = privileged ? record.rejectionReason : nil
        version = record.version
        createdAt = record.createdAt
        updatedAt = record.updatedAt
        publishedAt = record.publishedAt
    }
}

/// A row of the vendor's own list and of the review queue.
struct ListingSummary: Encodable, Sendable {
    var id: UUID
    var vendorId: UUID
    var category: String
    var title: String
    var price: Money
    var quantity: Int
    var quantityAvailable: Int
    var status: String
    var hiddenReason: String?
    var rejectionReason: String?
    var version: Int
    var createdAt: Date
    var updatedAt: Date
    var submittedAt: Date?
    var publishedAt: Date?
}
