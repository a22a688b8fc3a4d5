import Foundation
import Platform

/// The roles a person may choose when registering; staff roles are granted by admins only.
public enum SelfServiceRole: String, Sendable, CaseIterable {
    case buyer, vendor
}

/// `POST /v1/auth/register` body, all fields optional so every problem is reported at once.
struct RegisterRequest: Decodable {
    var email: String?
    var password: String?
    var displayName: String?
    var role: String?
    var businessProfile: BusinessProfileRequest?
}

struct BusinessProfileRequest: Decodable {
    var businessName: String?
    var licenceNumber: String?
    var location: LocationRequest?

    struct LocationRequest: Decodable {
        var city: String?
        var region: String?
        var country: String?
    }
}

/// A vendor's business as buyers see it: required for vendors at registration.
public struct BusinessProfile: Codable, Sendable, Equatable {
    public var businessName: String
    public var licenceNumber: String?
    public var location: Location

    public struct Location: Codable, Sendable, Equatable {
        public var city: String
        public var region: String?
        /// ISO 3166-1 alpha-2, upper case.
        public var country: String
    }
}

/// A registration that passed validation.
public struct ValidRegistration: Sendable, Equatable {
    public var email: String
    public var normalizedEmail: String
    public var password: String
    public var displayName: String
    public var role: SelfServiceRole
    public var businessProfile: BusinessProfile?
}

public enum RegistrationRules {
    public static let passwordLength = PasswordPolicy.length
    public static let displayNameLength = 1...100

    /// Checks every field and returns all field errors together.
    static func validate(_ request: RegisterRequest) throws -> ValidRegistration {
        var errors: [FieldError] = []
        let email = request.email?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if request.email == nil {
            errors.append(FieldError("email", "is required"))
        } else if !isPlausibleEmail(email) {
            errors.append(FieldError("email", "must be a valid email address"))
        }
        let password = request.password ?? ""
        let displayName = request.displayName?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if request.password == nil {
            errors.append(FieldError("password", "is required"))
        } else if let problem = PasswordPolicy.shipped.problem(with: password, email: email, displayName: displayName) {
            errors.append(FieldError("password", problem))
        }
        if request.displayName == nil {
            errors.append(FieldError("displayName", "is required"))
        } else if !displayNameLength.contains(displayName.count) || displayName.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            errors.append(FieldError("displayName", "must be 1 to 100 printable characters"))
        }
        let role = request.role.flatMap(SelfServiceRole.init(rawValue:))
        if request.role == nil {
            errors.append(FieldError("role", "is required"))
        } else if role == nil {
            errors.append(FieldError("role", "must be one of: buyer, vendor"))
        }
        let profile = validateBusinessProfile(request.businessProfile, role: role, errors: &errors)
        guard errors.isEmpty, let role else { throw Problem.validation(errors) }
        return ValidRegistration(email: email, normalizedEmail: normalize(email: email), password: password, displayName: displayName,
                                 role: role, businessProfile: profile)
    }

    static func validateBusinessProfile(_ request: BusinessProfileRequest?, role: SelfServiceRole?, errors: inout [FieldError]) -> BusinessProfile? {
        guard role == .vendor else {
            if request != nil, role == .buyer { errors.append(FieldError("businessProfile", "is only for vendors")) }
            return nil
        }
        guard let request else {
            errors.append(FieldError("businessProfile", "is required for vendors"))
            return nil
        }
        func text(_ value: String?, _ field: String, required: Bool, maximum: Int) -> String? {
            let trimmed = value?.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let trimmed, !trimmed.isEmpty else {
                if required { errors.append(FieldError(field, "is required")) }
                return nil
            }
            guard trimmed.count <= maximum, !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                errors.append(FieldError(field, "must be 1 to \(maximum) printable characters"))
                return nil
            }
            return trimmed
        }
        let name = text(request.businessName, "businessProfile.businessName", required: true, maximum: 200)
        let licence = text(request.licenceNumber, "businessProfile.licenceNumber", required: false, maximum: 100)
        guard let location = request.location else {
            errors.append(FieldError("businessProfile.location", "is required"))
            return nil
        }
        let city = text(location.city, "businessProfile.location.city", required: true, maximum: 100)
        let region = text(location.region, "businessProfile.location.region", required: false, maximum: 100)
        let country = location.country?.trimmingCharacters(in: .whitespaces).uppercased()
        let validCountry = country.map { $0.utf8.count == 2 && $0.utf8.allSatisfy { $0 >= 65 && $0 <= 90 } } ?? false
        if location.country == nil { errors.append(FieldError("businessProfile.location.country", "is required")) }
        else if !validCountry { errors.append(FieldError("businessProfile.location.country", "must be an ISO 3166-1 alpha-2 code such as GB")) }
        guard let name, let city, let country, validCountry else { return nil }
        return BusinessProfile(businessName: name, licenceNumber: licence, location: .init(city: city, region: region, country: country))
    }

    public static func normalize(email: String) -> String {
        email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    /// A deliberately simple check (one `@`, a dotted domain, no spaces, sane lengths);
    /// ownership is proven by the verification mail, not by a regular expression.
    public static func isPlausibleEmail(_ email: String) -> Bool {
        guard (3...254).contains(email.utf8.count), !email.contains(where: \.isWhitespace),
              !email.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0.properties.generalCategory == .format })
        else { return false }
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...64).contains(parts[0].utf8.count) else { return false }
        let domain = parts[1]
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        return labels.count >= 2 && labels.allSatisfy { !$0.isEmpty && !$0.hasPrefix("-") && !$0.hasSuffix("-") }
    }
}
