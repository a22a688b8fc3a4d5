import Foundation
import Hummingbird

/// The suite's roles. Staff roles act on other people's data and count only with a second factor.
public enum Role: String, CaseIterable, Sendable, Codable {
    case buyer, vendor, moderator, admin

    public static let staff: Set<Role> = [.moderator, .admin]
    /// The roles a person picks at registration.
    public static let selfService: Set<Role> = [.buyer, .vendor]

    public var isStaff: Bool { Self.staff.contains(self) }

    /// Every role name, in the order above.
    public static let names = allCases.map(\.rawValue)

    /// The roles a token may carry: staff roles only for sessions signed in with a second factor.
    public static func effective(_ roles: [String], amr: [String]) -> [String] {
        Gates.hasSecondFactor(amr) ? roles : roles.filter { Role(rawValue: $0)?.isStaff != true }
    }
}

extension Principal {
    /// True when the caller holds `role`; a staff role counts only when the token proves a second factor.
    public func has(_ role: Role) -> Bool {
        roles.contains(role.rawValue) && (!role.isStaff || Gates.hasSecondFactor(authenticationMethods))
    }

    public func hasAny(of roles: some Sequence<Role>) -> Bool { roles.contains(where: has) }

    /// A moderator or an admin, with a second factor.
    public var isStaff: Bool { hasAny(of: Role.staff) }
}

/// The checks every service applies before its policies: signed in, a role, a verified email.
/// Apply them to a route group (`RequireRole`, `RequireVerifiedEmail`) rather than in each handler.
public enum Gates {
    /// `amr` values that prove a second factor (RFC 8176: `otp`; `mfa` as a general claim).
    static func hasSecondFactor(_ amr: [String]) -> Bool { amr.contains("otp") || amr.contains("mfa") }

    /// The caller, holding one of `roles`: 401 without a token, 403 `forbidden` otherwise.
    @discardableResult
    public static func requireRole(_ roles: Set<Role>, of principal: Principal?) throws -> Principal {
        guard let principal else { throw Problem(.unauthorized, "A valid access token is required.", headers: [.wwwAuthenticate: "Bearer"]) }
        guard principal.hasAny(of: roles) else {
            let names = Role.allCases.filter(roles.contains).map(\.rawValue).joined(separator: " or ")
            let staffWithoutFactor = roles.contains(where: \.isStaff) && principal.roles.contains { Role(rawValue: $0)?.isStaff == true }
            throw Problem(.forbidden, staffWithoutFactor
                          ? "Staff access needs a session signed in with a second factor."
                          : "This needs the \(names) role.")
        }
        return principal
    }

    /// The caller, with a verified email address: 403 `email-not-verified` otherwise.
    @discardableResult
    public static func requireVerifiedEmail(_ principal: Principal?) throws -> Principal {
        guard let principal else { throw Problem(.unauthorized, "A valid access token is required.", headers: [.wwwAuthenticate: "Bearer"]) }
        guard principal.emailVerified else {
            throw Problem(.forbidden, "Verify your email address first.", typeSlug: "email-not-verified")
        }
        return principal
    }
}

/// Lets a route group's requests through only for callers holding one of `roles`.
public struct RequireRole<Context: ServiceRequestContext>: RouterMiddleware {
    let roles: Set<Role>

    public init(_ roles: Role...) { self.roles = Set(roles) }
    public init(_ roles: Set<Role>) { self.roles = roles }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try Gates.requireRole(roles, of: context.principal)
        return try await next(request, context)
    }
}

/// Lets a route group's requests through only for signed-in callers with a verified email.
public struct RequireVerifiedEmail<Context: ServiceRequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try Gates.requireVerifiedEmail(context.principal)
        return try await next(request, context)
    }
}

/// Lets a route group's requests through only for signed-in callers.
public struct RequireSignedIn<Context: ServiceRequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        _ = try context.requirePrincipal()
        return try await next(request, context)
    }
}
