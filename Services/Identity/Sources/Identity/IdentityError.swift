import Platform

/// Identity's domain errors, mapped to problems in this one place.
public enum IdentityError: Error, ProblemConvertible, Equatable {
    case emailTaken
    case invalidCredentials
    case invalidRefreshToken
    case refreshTokenReused
    case accountSuspended
    case userNotFound
    case sessionNotFound
    case signingKeyUnavailable
    case invalidEmailToken
    case emailAlreadyVerified
    case mfaAlreadyEnabled
    case mfaNotEnrolling
    case invalidMfaCode
    case invalidMfaChallenge
    case forbidden
    case targetNotFound
    case cannotDemoteSelf
    case cannotSuspendSelf
    case exportNotFound
    case erasureBlocked([String])

    public var problem: Problem {
        switch self {
        case .emailTaken:
            Problem(.conflict, "An account with this email already exists.", typeSlug: "email-taken")
        case .invalidCredentials:
            Problem(.unauthorized, "The email or password is incorrect.", typeSlug: "invalid-credentials")
        case .invalidRefreshToken, .refreshTokenReused:
            // Reuse is answered like any invalid token; the family revocation is logged server-side.
            Problem(.unauthorized, "The refresh token is not valid.", typeSlug: "invalid-refresh-token")
        case .accountSuspended:
            Problem(.forbidden, "The account is suspended.", typeSlug: "account-suspended")
        case .userNotFound:
            Problem(.unauthorized, "The account no longer exists.", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
        case .sessionNotFound:
            Problem(.notFound, "No such session of yours.")
        case .signingKeyUnavailable:
            Problem(.serviceUnavailable, "Tokens cannot be issued right now; retry shortly.", headers: [.retryAfter: "1"])
        case .invalidEmailToken:
            Problem.validation([FieldError("token", "is invalid, already used or expired; request a new link")])
        case .emailAlreadyVerified:
            Problem(.conflict, "The email address is already verified.", typeSlug: "email-already-verified")
        case .mfaAlreadyEnabled:
            Problem(.conflict, "Two-factor authentication is already enabled.", typeSlug: "mfa-already-enabled")
        case .mfaNotEnrolling:
            Problem(.conflict, "Start enrolment with POST /v1/auth/mfa/totp first.", typeSlug: "mfa-not-enrolling")
        case .invalidMfaCode:
            Problem(.unauthorized, "The code is not valid.", typeSlug: "invalid-mfa-code")
        case .invalidMfaChallenge:
            Problem(.unauthorized, "The sign-in attempt expired or was used up; sign in with your password again.", typeSlug: "invalid-mfa-token")
        case .forbidden:
            Problem(.forbidden, "This needs the admin role, signed in with a second factor.")
        case .targetNotFound:
            Problem(.notFound, "No such user.")
        case .cannotDemoteSelf:
            Problem(.conflict, "Admins cannot remove their own admin role; ask another admin.", typeSlug: "cannot-demote-self")
        case .cannotSuspendSelf:
            Problem(.conflict, "Admins cannot suspend themselves.", typeSlug: "cannot-suspend-self")
        case .exportNotFound:
            Problem(.notFound, "No such export of yours (exports are kept 7 days).")
        case .erasureBlocked(let blockers):
            Problem(.conflict, "The account cannot be erased yet: \(blockers.joined(separator: " and ")). Close them first.",
                    typeSlug: "erasure-blocked")
        }
    }
}
