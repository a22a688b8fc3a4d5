import Foundation
import Testing
@testable import Identity
@testable import Platform

@Suite struct IdentityTests {
    static let shop = BusinessProfileRequest(businessName: " Ann's Kennels ", licenceNumber: nil, location: .init(city: "York", region: nil, country: "gb"))

    func request(email: String? = "Ann@Example.com ", password: String? = "correct horse battery", displayName: String? = "Ann", role: String? = "vendor",
                 profile: BusinessProfileRequest? = Self.shop) -> RegisterRequest {
        RegisterRequest(email: email, password: password, displayName: displayName, role: role, businessProfile: role == "vendor" ? profile : nil)
    }

    @Test func aValidRegistrationIsNormalised() throws {
        let valid = try RegistrationRules.validate(request())
        #expect(valid.email == "Ann@Example.com")
        #expect(valid.normalizedEmail == "ann@example.com")
        #expect(valid.role == .vendor)
        #expect(valid.businessProfile == BusinessProfile(businessName: "Ann's Kennels", licenceNumber: nil, location: .init(city: "York", region: nil, country: "GB")))
    }

    @Test func vendorsNeedABusinessProfileAndBuyersHaveNone() throws {
        #expect(throws: Problem.validation([FieldError("businessProfile", "is required for vendors")])) {
            try RegistrationRules.validate(request(profile: nil))
        }
        #expect(throws: Problem.validation([
            FieldError("businessProfile.businessName", "is required"),
            FieldError("businessProfile.location.city", "is required"),
            FieldError("businessProfile.location.country", "must be an ISO 3166-1 alpha-2 code such as GB"),
        ])) {
            try RegistrationRules.validate(request(profile: BusinessProfileRequest(businessName: " ", licenceNumber: "L-1", location: .init(city: nil, region: "N", country: "GBR"))))
        }
        var buyer = request(role: "buyer")
        buyer.businessProfile = Self.shop
        #expect(throws: Problem.validation([FieldError("businessProfile", "is only for vendors")])) { try RegistrationRules.validate(buyer) }
        #expect(try RegistrationRules.validate(request(role: "buyer")).businessProfile == nil)
    }

    @Test func everyInvalidFieldIsReportedTogether() {
        #expect(throws: Problem.validation([
            FieldError("email", "must be a valid email address"),
            FieldError("password", "must be 12 to 128 characters"),
            FieldError("displayName", "is required"),
            FieldError("role", "must be one of: buyer, vendor"),
        ])) {
            try RegistrationRules.validate(request(email: "nope", password: "short", displayName: nil, role: "admin"))
        }
    }

    @Test func staffRolesCannotBeSelfAssigned() {
        #expect(throws: Problem.self) { try RegistrationRules.validate(request(role: "moderator")) }
    }

    @Test(arguments: ["a@b.co", "first.last+tag@sub.example.org"])
    func plausibleEmails(_ email: String) { #expect(RegistrationRules.isPlausibleEmail(email)) }

    @Test(arguments: ["", "a", "a@b", "a@@b.co", "a b@c.de", "@b.co", "a@-b.co", "a@b..co", "a\u{0}@b.co"])
    func implausibleEmails(_ email: String) { #expect(!RegistrationRules.isPlausibleEmail(email)) }

    @Test func phcParametersAreRead() {
        let parameters = PasswordHasher.parameters(of: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g")
        #expect(parameters == .owasp)
        #expect(PasswordHasher.parameters(of: "$2b$12$bcrypt") == nil)
    }

    @Test func argon2idHashesVerifyAndCarryOWASPParameters() async throws {
        let hasher = PasswordHasher()
        let hash = try await hasher.hash("correct horse battery")
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(await hasher.verify("correct horse battery", against: hash))
        #expect(!(await hasher.verify("wrong horse battery", against: hash)))
        #expect(!(await hasher.verify("x", against: "not a hash")))
        #expect(try await hasher.hash("correct horse battery") != hash)  // salted
    }

    @Test func domainErrorsMapToStableProblemTypes() {
        #expect(IdentityError.emailTaken.problem.type.hasSuffix("/email-taken"))
        #expect(IdentityError.emailTaken.problem.status == .conflict)
        #expect(IdentityError.invalidCredentials.problem.status == .unauthorized)
        #expect(IdentityError.refreshTokenReused.problem == IdentityError.invalidRefreshToken.problem)
    }
}

@Suite struct LoginThrottlePolicyTests {
    let policy = LoginThrottlePolicy()

    @Test func accountsLockAfterFiveFailuresWithDoublingLocksUpToFifteenMinutes() {
        #expect((1...5).allSatisfy { policy.accountLock(afterFailures: $0) == nil })
        #expect(policy.accountLock(afterFailures: 6) == 30)
        #expect(policy.accountLock(afterFailures: 7) == 60)
        #expect(policy.accountLock(afterFailures: 8) == 120)
        #expect(policy.accountLock(afterFailures: 10) == 480)
        #expect(policy.accountLock(afterFailures: 11) == 900)
        #expect(policy.accountLock(afterFailures: 1_000) == 900)
    }

    @Test func addressesLockForFifteenMinutesAfterTwentyFailures() {
        #expect(policy.addressLock(afterFailures: 19) == nil)
        #expect(policy.addressLock(afterFailures: 20) == 900)
        #expect(policy.addressLock(afterFailures: 21) == 900)
    }

    @Test func operatorsCanTuneTheThresholds() throws {
        let tuned = try LoginThrottlePolicy(ConfigReader(values: ["IDENTITY_LOGIN_ACCOUNT_FREE_FAILURES": "3", "IDENTITY_LOGIN_ADDRESS_FAILURES": "50"]))
        #expect(tuned.accountLock(afterFailures: 4) == 30)
        #expect(tuned.addressLock(afterFailures: 49) == nil)
        #expect(throws: ConfigError.self) { try LoginThrottlePolicy(ConfigReader(values: ["IDENTITY_LOGIN_ACCOUNT_FREE_FAILURES": "0"])) }
    }
}

@Suite struct PasswordPolicyTests {
    let policy = PasswordPolicy.shipped

    @Test func theShippedListIsLoaded() {
        #expect(policy.problem(with: "Password1234", email: "a@b.co", displayName: "Ann") == "is too common; choose a longer phrase")
        #expect(policy.problem(with: "QWERTYUIOP123", email: "a@b.co", displayName: "Ann") != nil, "case does not matter")
    }

    @Test(arguments: ["aaaaaaaaaaaa", "abcabcabcabc", "121212121212", "123456789012", "987654321098", "abcdefghijklmnop", "zyxwvutsrqpo"])
    func trivialPatternsAreRefused(_ password: String) {
        #expect(policy.problem(with: password, email: "a@b.co", displayName: "Ann") != nil)
    }

    @Test func theAccountsOwnDetailsAreRefused() {
        #expect(policy.problem(with: "kennelaurora-2026!", email: "kennelaurora@example.com", displayName: "X") != nil)
        #expect(policy.problem(with: "best Bo breeder 2026", email: "x@y.co", displayName: "Bo") == nil, "names under four letters are not checked")
        #expect(policy.problem(with: "best Breeder Bella 2026", email: "x@y.co", displayName: "Bella") != nil)
        #expect(policy.problem(with: "my Rosemary garden 9", email: "x@y.co", displayName: "Rose Mary") != nil)
        #expect(policy.problem(with: "love my marketplace!", email: "x@y.co", displayName: "Ann") != nil)
    }

    @Test func lengthIsTheOnlyCompositionRule() {
        #expect(policy.problem(with: "short", email: "a@b.co", displayName: "Ann") == "must be 12 to 128 characters")
        #expect(policy.problem(with: "correct horse battery", email: "a@b.co", displayName: "Ann") == nil)
        #expect(policy.problem(with: "всё хорошо, спасибо", email: "a@b.co", displayName: "Ann") == nil, "any characters count")
        #expect(policy.problem(with: String(repeating: "x1", count: 65), email: "a@b.co", displayName: "Ann") != nil)
    }
}
