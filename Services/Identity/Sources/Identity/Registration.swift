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
}

/// A registration that passed validation.
public struct ValidRegistration: Sendable, Equatable {
    public var email: String
    public var normalizedEmail: String
    public var password: String
    public var displayName: String
    public var role: SelfServiceRole
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
        guard errors.isEmpty, let role else { throw Problem.validation(errors) }
        return ValidRegistration(email: email, normalizedEmail: normalize(email: email), password: password, displayName: displayName, role: role)
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
