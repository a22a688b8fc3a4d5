import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// Identity's HTTP endpoints: thin handlers that decode, validate, call the domain and answer.
struct IdentityRoutes: Sendable {
    let accounts: AccountService
    let sessions: SessionStore
    let keyRing: SigningKeyRing
    let administration: Administration
    let policy: AdministrationPolicy
    let limit: Int

    func add(to router: ServiceRouter) {
        addAuthentication(to: router)
        addRecovery(to: router)
        addMultiFactor(to: router)
        addAccount(to: router)
        addAdministration(to: router)
        router.get("/.well-known/jwks.json") { [keyRing] _, _ -> Response in
            try JSONResponse.make(try await keyRing.jwks(), cacheControl: "public, max-age=300")
        }
    }

    /// The caller, if their session is still live: identity's own account endpoints refuse a token
    /// whose session was revoked even before the token expires.
    func liveCaller(_ context: AppRequestContext) async throws -> Principal {
        let caller = try context.requirePrincipal()
        guard let session = caller.sessionId else { return caller }
        let rows = try await accounts.client.query(
            "SELECT 1 FROM sessions WHERE id = \(session) AND user_id = \(caller.userId) AND revoked_at IS NULL", logger: context.logger)
        for try await _ in rows.decode(Int.self) { return caller }
        throw Problem(.unauthorized, "The session has ended; sign in again.", headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
    }

    private func addAuthentication(to router: ServiceRouter) {
        let (accounts, limit) = (accounts, limit)
        router.post("/v1/auth/register") { request, context -> Response in
            let body = try await JSONBody.decode(RegisterRequest.self, from: request, limit: limit)
            let registration = try RegistrationRules.validate(body)
            let user = try await accounts.register(registration, context: context.operation)
            return try JSONResponse.make(user, status: .created, cacheControl: "no-store", headers: [.location: "/v1/users/\(user.id.uuidString.lowercased())"])
        }
        router.post("/v1/auth/login") { request, context -> Response in
            let credentials = try await JSONBody.decode(LoginRequest.self, from: request, limit: limit).validated()
            let result = try await accounts.login(email: credentials.email, password: credentials.password,
                                                  userAgent: request.headers[.userAgent], address: IdentityService.clientAddress(request, context),
                                                  context: context.operation)
            switch result {
            case .tokens(let pair): return try JSONResponse.make(pair, cacheControl: "no-store")
            case .mfaRequired(let challenge): return try JSONResponse.make(challenge, cacheControl: "no-store")
            }
        }
        router.post("/v1/auth/mfa/verify") { request, context -> Response in
            let body = try await JSONBody.decode(MfaVerifyRequest.self, from: request, limit: limit)
            let (challenge, proof) = try body.validated()
            let pair = try await accounts.completeLogin(challenge: challenge, proof: proof, context: context.operation)
            return try JSONResponse.make(pair, cacheControl: "no-store")
        }
        router.post("/v1/auth/refresh") { request, context -> Response in
            let body = try await JSONBody.decode(RefreshRequest.self, from: request, limit: limit)
            try body.validate()
            let pair = try await accounts.refresh(token: body.refreshToken, context: context.operation)
            return try JSONResponse.make(pair, cacheControl: "no-store")
        }
        router.post("/v1/auth/logout") { request, context -> Response in
            let body = try await JSONBody.decode(RefreshRequest.self, from: request, limit: limit)
            try body.validate()
            try await accounts.logout(token: body.refreshToken, context: context.operation)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
    }

    private func addRecovery(to router: ServiceRouter) {
        let (accounts, limit) = (accounts, limit)
        router.post("/v1/auth/verify-email") { request, context -> Response in
            let body = try await JSONBody.decode(TokenRequest.self, from: request, limit: limit)
            try await accounts.verifyEmail(token: try body.validated(), address: IdentityService.clientAddress(request, context), context: context.operation)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.post("/v1/auth/verify-email/resend") { request, context -> Response in
            let caller = try await liveCaller(context)
            try await accounts.resendVerification(user: caller.userId, address: IdentityService.clientAddress(request, context), context: context.operation)
            return try JSONResponse.make(["status": "accepted"], status: .accepted, cacheControl: "no-store")
        }
        router.post("/v1/auth/password-reset") { request, context -> Response in
            let body = try await JSONBody.decode(PasswordResetRequest.self, from: request, limit: limit)
            try await accounts.requestPasswordReset(email: try body.validated(), address: IdentityService.clientAddress(request, context),
                                                    context: context.operation)
            return try JSONResponse.make(["status": "accepted"], status: .accepted, cacheControl: "no-store")
        }
        router.post("/v1/auth/password-reset/confirm") { request, context -> Response in
            let body = try await JSONBody.decode(PasswordResetConfirmRequest.self, from: request, limit: limit)
            let (token, password) = try body.validated()
            try await accounts.confirmPasswordReset(token: token, newPassword: password, address: IdentityService.clientAddress(request, context),
                                                    context: context.operation)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.post("/v1/auth/password-change") { request, context -> Response in
            let caller = try await liveCaller(context)
            let body = try await JSONBody.decode(PasswordChangeRequest.self, from: request, limit: limit)
            let (current, new) = try body.validated()
            try await accounts.changePassword(user: caller.userId, session: caller.sessionId, current: current, new: new,
                                              address: IdentityService.clientAddress(request, context), context: context.operation)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
    }

    private func addMultiFactor(to router: ServiceRouter) {
        let (accounts, limit) = (accounts, limit)
        router.post("/v1/auth/mfa/totp") { _, context -> Response in
            let caller = try await liveCaller(context)
            let enrolment = try await MultiFactor.enrol(user: caller.userId, sealer: accounts.secrets, client: accounts.client, context: context.operation)
            return try JSONResponse.make(enrolment, status: .created, cacheControl: "no-store")
        }
        router.post("/v1/auth/mfa/totp/confirm") { request, context -> Response in
            let caller = try await liveCaller(context)
            let body = try await JSONBody.decode(CodeRequest.self, from: request, limit: limit)
            let codes = try await MultiFactor.confirm(user: caller.userId, code: try body.validated(), sealer: accounts.secrets,
                                                      client: accounts.client, context: context.operation)
            return try JSONResponse.make(codes, cacheControl: "no-store")
        }
    }

    private func addAccount(to router: ServiceRouter) {
        let (accounts, sessions, limit) = (accounts, sessions, limit)
        router.get("/v1/sessions") { _, context -> Response in
            let caller = try context.requirePrincipal()
            let live = try await sessions.live(of: caller.userId, current: caller.sessionId, context: context.operation)
            return try JSONResponse.make(Page(items: live, nextCursor: nil), cacheControl: "private, no-store")
        }
        router.delete("/v1/sessions") { _, context -> Response in
            let caller = try await liveCaller(context)
            try await accounts.signOutEverywhere(user: caller.userId, context: context.operation)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.delete("/v1/sessions/{id}") { _, context -> Response in
            let caller = try context.requirePrincipal()
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
                throw IdentityError.sessionNotFound
            }
            try await sessions.revoke(id, of: caller.userId, context: context.operation)
            return Response(status: .noContent, headers: [.cacheControl: "no-store"])
        }
        router.get("/v1/users/me") { _, context -> Response in
            let caller = try context.requirePrincipal()
            return try JSONResponse.make(try await accounts.user(id: caller.userId, context: context.operation), cacheControl: "private, no-store")
        }
        router.post("/v1/users/me/exports") { _, context -> Response in
            let caller = try await liveCaller(context)
            try await accounts.recoveryThrottle.take(account: caller.userId.uuidString.lowercased(), address: nil, purpose: "export", context: context.operation)
            let export = try await Exports.request(user: caller.userId, client: accounts.client, context: context.operation)
            return try JSONResponse.make(export, status: .accepted, cacheControl: "no-store",
                                         headers: [.location: "/v1/users/me/exports/\(export.id.uuidString.lowercased())"])
        }
        router.get("/v1/users/me/exports/{id}") { _, context -> Response in
            let caller = try await liveCaller(context)
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else { throw IdentityError.exportNotFound }
            let export = try await Exports.view(id, user: caller.userId, client: accounts.client, context: context.operation)
            var headers: HTTPFields = [:]
            if export.status == "ready" { headers[.contentDisposition] = "attachment; filename=\"marketplace-export-\(id.uuidString.lowercased()).json\"" }
            return try JSONResponse.make(export, cacheControl: "private, no-store", headers: headers)
        }
        router.delete("/v1/users/me") { request, context -> Response in
            let caller = try await liveCaller(context)
            let body = try await JSONBody.decode(ErasureRequest.self, from: request, limit: limit)
            let (password, proof) = try body.validated()
            try await accounts.requestErasure(user: caller.userId, password: password, proof: proof,
                                              address: IdentityService.clientAddress(request, context), context: context.operation)
            return try JSONResponse.make(["status": "erasure_requested"], status: .accepted, cacheControl: "no-store")
        }
        router.get("/v1/users/me/export") { _, context -> Response in
            let caller = try await liveCaller(context)
            let export = try await Privacy.export(user: caller.userId, client: accounts.client, context: context.operation)
            return try JSONResponse.make(export, cacheControl: "private, no-store",
                                         headers: [.contentDisposition: "attachment; filename=\"identity-export.json\""])
        }
    }

    /// Every administration route: an admin with a second factor (the gate), whose account still
    /// holds the role and whose session is live (the policy, against the database).
    private func addAdministration(to router: ServiceRouter) {
        let (administration, policy, limit) = (administration, policy, limit)
        let admin = router.group("/v1/admin").add(middleware: RequireRole(.admin))
        @Sendable func requireAdmin(_ context: AppRequestContext) async throws -> Principal {
            let caller = try await liveCaller(context)
            try await policy.requireAdmin(caller, context: context.operation)
            return caller
        }
        admin.get("/users") { request, context -> Response in
            _ = try await requireAdmin(context)
            let filter = try AdminQueries.userFilter(request)
            let page = try await administration.users(filter, try KeysetPageRequest(request, order: Administration.newestFirst,
                                                                                    binding: Administration.binding(filter)), context: context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
        admin.get("/users/{id}") { _, context -> Response in
            _ = try await requireAdmin(context)
            return try JSONResponse.make(try await administration.user(try AdminQueries.target(context), context: context.operation),
                                         cacheControl: "private, no-store")
        }
        admin.put("/users/{id}/roles") { request, context -> Response in
            let caller = try await requireAdmin(context)
            let target = try AdminQueries.target(context)
            let (roles, reason) = try await JSONBody.decode(RolesRequest.self, from: request, limit: limit).validated()
            let user = try await administration.setRoles(roles, of: target, reason: reason, actor: caller.userId, context: context.operation)
            return try JSONResponse.make(user, cacheControl: "no-store")
        }
        admin.post("/users/{id}/suspend") { request, context -> Response in
            let caller = try await requireAdmin(context)
            let target = try AdminQueries.target(context)
            let reason = try await JSONBody.decode(ReasonRequest.self, from: request, limit: limit).validated()
            let user = try await administration.suspend(target, reason: reason, actor: caller.userId, context: context.operation)
            return try JSONResponse.make(user, cacheControl: "no-store")
        }
        admin.post("/users/{id}/reinstate") { request, context -> Response in
            let caller = try await requireAdmin(context)
            let target = try AdminQueries.target(context)
            let reason = try await JSONBody.decode(ReasonRequest.self, from: request, limit: limit).validated()
            let user = try await administration.reinstate(target, reason: reason, actor: caller.userId, context: context.operation)
            return try JSONResponse.make(user, cacheControl: "no-store")
        }
        admin.get("/audit-log") { request, context -> Response in
            _ = try await requireAdmin(context)
            let filter = try AdminQueries.auditFilter(request)
            let page = try await AuditLog.page(filter, try KeysetPageRequest(request, order: AuditLog.newestFirst, binding: AuditLog.binding(filter)),
                                               client: administration.client, context: context.operation)
            return try JSONResponse.make(page, cacheControl: "private, no-store")
        }
    }
}

/// Query parameters of the administration lists, each checked with a field error.
enum AdminQueries {
    static func target(_ context: AppRequestContext) throws -> UUID {
        guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else { throw IdentityError.targetNotFound }
        return id
    }

    static func userFilter(_ request: Request) throws -> Administration.UserFilter {
        var errors: [FieldError] = []
        let role = request.queryString("role")
        if let role, !Role.names.contains(role) { errors.append(FieldError("role", "must be one of: \(Role.names.joined(separator: ", "))")) }
        let status = request.queryString("status")
        if let status, !["active", "suspended", "erased"].contains(status) { errors.append(FieldError("status", "must be one of: active, suspended, erased")) }
        let email = request.queryString("email").map(RegistrationRules.normalize(email:))
        if let email, !(1...254).contains(email.utf8.count) { errors.append(FieldError("email", "must be 1 to 254 characters")) }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return .init(role: role, status: status, emailPrefix: email)
    }

    static func auditFilter(_ request: Request) throws -> AuditLog.Filter {
        var errors: [FieldError] = []
        func uuid(_ name: String) -> UUID? {
            guard let text = request.queryString(name) else { return nil }
            guard let id = UUID(uuidString: text) else { errors.append(FieldError(name, "must be a UUID")); return nil }
            return id
        }
        let filter = AuditLog.Filter(actorId: uuid("actorId"), targetId: uuid("targetId"), action: request.queryString("action"))
        if let action = filter.action, !AuditLog.Action.allCases.map(\.rawValue).contains(action) {
            errors.append(FieldError("action", "is not an audited action"))
        }
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return filter
    }
}

/// Checks a required secret or identifier (a token, a code, an address to look up): present and
/// 1 to `maximum` Unicode scalars, as the contract's `minLength`/`maxLength` count, taken as given.
/// Whether it is right is for the lookup to say (a wrong one is a 401, or "accepted" for a reset).
func presentText(_ value: String?, _ field: String, maximum: Int, _ errors: inout [FieldError]) -> String {
    guard let value else { errors.append(FieldError(field, "is required")); return "" }
    guard (1...maximum).contains(value.unicodeScalars.count) else { errors.append(FieldError(field, "must be 1 to \(maximum) characters")); return "" }
    return value
}

/// Checks a required string field of human text: present, not blank, at most `maximum` characters.
func requiredText(_ value: String?, _ field: String, maximum: Int, _ errors: inout [FieldError]) -> String {
    guard let value else { errors.append(FieldError(field, "is required")); return "" }
    let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty, value.unicodeScalars.count <= maximum,
          !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
    else { errors.append(FieldError(field, "must be 1 to \(maximum) printable characters, not only spaces")); return "" }
    return trimmed
}

struct TokenRequest: Decodable {
    var token: String?

    func validated() throws -> String {
        var errors: [FieldError] = []
        let token = presentText(token, "token", maximum: 512, &errors)
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return token
    }
}

struct PasswordResetRequest: Decodable {
    var email: String?

    func validated() throws -> String {
        var errors: [FieldError] = []
        let email = presentText(email, "email", maximum: 254, &errors)
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return email
    }
}

struct PasswordResetConfirmRequest: Decodable {
    var token: String?
    var newPassword: String?

    func validated() throws -> (String, String) {
        var errors: [FieldError] = []
        let token = presentText(token, "token", maximum: 512, &errors)
        if newPassword == nil { errors.append(FieldError("newPassword", "is required")) }
        else if let problem = PasswordPolicy.shipped.problem(with: newPassword ?? "", email: "", displayName: "") {
            errors.append(FieldError("newPassword", problem))
        }
        guard errors.isEmpty, let newPassword else { throw Problem.validation(errors) }
        return (token, newPassword)
    }
}

struct PasswordChangeRequest: Decodable {
    var currentPassword: String?
    var newPassword: String?

    func validated() throws -> (String, String) {
        var errors: [FieldError] = []
        if currentPassword?.isEmpty ?? true { errors.append(FieldError("currentPassword", "is required")) }
        else if (currentPassword?.count ?? 0) > RegistrationRules.passwordLength.upperBound {
            errors.append(FieldError("currentPassword", "must be at most \(RegistrationRules.passwordLength.upperBound) characters"))
        }
        if newPassword == nil { errors.append(FieldError("newPassword", "is required")) }
        guard errors.isEmpty, let currentPassword, let newPassword else { throw Problem.validation(errors) }
        return (currentPassword, newPassword)
    }
}

struct CodeRequest: Decodable {
    var code: String?

    func validated() throws -> String {
        var errors: [FieldError] = []
        let code = presentText(code, "code", maximum: 16, &errors)
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return code
    }
}

struct MfaVerifyRequest: Decodable {
    var mfaToken: String?
    var code: String?
    var recoveryCode: String?

    func validated() throws -> (String, MultiFactor.Proof) {
        var errors: [FieldError] = []
        let token = presentText(mfaToken, "mfaToken", maximum: 512, &errors)
        var proof: MultiFactor.Proof?
        switch (code, recoveryCode) {
        case (let code?, nil): proof = .totp(presentText(code, "code", maximum: 16, &errors))
        case (nil, let recovery?): proof = .recoveryCode(presentText(recovery, "recoveryCode", maximum: 32, &errors))
        case (nil, nil): errors.append(FieldError("code", "is required (or recoveryCode)"))
        case (.some, .some): errors.append(FieldError("recoveryCode", "give either code or recoveryCode, not both"))
        }
        guard errors.isEmpty, let proof else { throw Problem.validation(errors) }
        return (token, proof)
    }
}

struct ReasonRequest: Decodable {
    var reason: String?

    func validated() throws -> String {
        var errors: [FieldError] = []
        let reason = requiredText(reason, "reason", maximum: 500, &errors)
        guard errors.isEmpty else { throw Problem.validation(errors) }
        return reason
    }
}

struct RolesRequest: Decodable {
    var roles: [String]?
    var reason: String?

    func validated() throws -> ([String], String) {
        var errors: [FieldError] = []
        let reason = requiredText(reason, "reason", maximum: 500, &errors)
        if let roles {
            if roles.isEmpty || roles.count > Role.names.count || Set(roles).count != roles.count || !roles.allSatisfy(Role.names.contains) {
                errors.append(FieldError("roles", "must be distinct roles from: \(Role.names.joined(separator: ", "))"))
            }
        } else {
            errors.append(FieldError("roles", "is required"))
        }
        guard errors.isEmpty, let roles else { throw Problem.validation(errors) }
        return (roles, reason)
    }
}

struct ErasureRequest: Decodable {
    var password: String?
    var code: String?
    var recoveryCode: String?

    func validated() throws -> (String, MultiFactor.Proof?) {
        var errors: [FieldError] = []
        if password?.isEmpty ?? true { errors.append(FieldError("password", "is required: erasure needs the password again")) }
        else if (password?.count ?? 0) > RegistrationRules.passwordLength.upperBound {
            errors.append(FieldError("password", "must be at most \(RegistrationRules.passwordLength.upperBound) characters"))
        }
        var proof: MultiFactor.Proof?
        switch (code, recoveryCode) {
        case (let code?, nil): proof = .totp(presentText(code, "code", maximum: 16, &errors))
        case (nil, let recovery?): proof = .recoveryCode(presentText(recovery, "recoveryCode", maximum: 32, &errors))
        case (.some, .some): errors.append(FieldError("recoveryCode", "give either code or recoveryCode, not both"))
        case (nil, nil): break
        }
        guard errors.isEmpty, let password else { throw Problem.validation(errors) }
        return (password, proof)
    }
}
