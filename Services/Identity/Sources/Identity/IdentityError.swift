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
        }
    }
}
