import Foundation
import Platform
import Testing
@testable import Identity

/// RFC 6238 appendix B test vectors (8 digits), base32 (RFC 4648 §10) and the matching window.
struct TotpTests {
    static let times: [Int64] = [59, 1_111_111_109, 1_111_111_111, 1_234_567_890, 2_000_000_000, 20_000_000_000]

    @Test(arguments: [
        (Totp.Algorithm.sha1, "12345678901234567890", ["94287082", "07081804", "14050471", "89005924", "69279037", "65353130"]),
        (.sha256, "12345678901234567890123456789012", ["46119246", "68084774", "67062674", "91819424", "90698825", "77737706"]),
        (.sha512, "1234567890123456789012345678901234567890123456789012345678901234",
         ["90693936", "25091201", "99943326", "93441116", "38618901", "47863826"]),
    ])
    func rfc6238Vectors(algorithm: Totp.Algorithm, secret: String, codes: [String]) {
        let totp = Totp(secret: Array(secret.utf8), digits: 8, algorithm: algorithm)
        for (time, code) in zip(Self.times, codes) {
            #expect(totp.code(step: totp.step(at: time)) == code, "\(algorithm) at \(time)")
            #expect(totp.matchingStep(code, at: time) == totp.step(at: time))
        }
    }

    @Test func sixDigitCodesAreTheLowDigitsZeroPadded() {
        let totp = Totp(secret: Array("12345678901234567890".utf8))
        #expect(totp.code(step: totp.step(at: 1_111_111_109)) == "081804")
        #expect(totp.code(step: totp.step(at: 59)) == "287082")
    }

    @Test func oneStepOfDriftEitherWayIsAcceptedTwoIsNot() {
        let totp = Totp(secret: Totp.newSecret())
        let now: Int64 = 1_700_000_000
        let step = totp.step(at: now)
        #expect(totp.matchingStep(totp.code(step: step - 1), at: now) == step - 1)
        #expect(totp.matchingStep(totp.code(step: step + 1), at: now) == step + 1)
        let farCode = totp.code(step: step - 2)
        let nearCodes = (step - 1...step + 1).map(totp.code(step:))
        if !nearCodes.contains(farCode) { #expect(totp.matchingStep(farCode, at: now) == nil) }
        #expect(totp.matchingStep("12345", at: now) == nil)
        #expect(totp.matchingStep("12345a", at: now) == nil)
        #expect(totp.matchingStep("", at: now) == nil)
    }

    @Test func base32RoundTripsAndRfc4648Vectors() {
        let vectors = ["": "", "f": "MY", "fo": "MZXQ", "foo": "MZXW6", "foob": "MZXW6YQ", "fooba": "MZXW6YTB", "foobar": "MZXW6YTBOI"]
        for (plain, encoded) in vectors {
            #expect(Base32.encode(Array(plain.utf8)) == encoded)
            #expect(Base32.decode(encoded) == Array(plain.utf8))
        }
        #expect(Base32.decode("mzxw 6ytb oi======") == Array("foobar".utf8))
        #expect(Base32.decode("MZXW1") == nil)
        let secret = Totp.newSecret()
        #expect(secret.count == 20)
        #expect(Base32.decode(Base32.encode(secret)) == secret)
    }

    @Test func provisioningUriNamesIssuerAccountAndParameters() {
        let totp = Totp(secret: Array("12345678901234567890".utf8))
        let uri = totp.provisioningURI(issuer: "Marketplace", account: "ann+shop@example.com")
        #expect(uri == "otpauth://totp/Marketplace:ann%2Bshop@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Marketplace&algorithm=SHA1&digits=6&period=30")
    }

    @Test func staffRolesNeedASecondFactor() {
        #expect(Role.effective(["buyer", "admin"], amr: ["pwd"]) == ["buyer"])
        #expect(Role.effective(["moderator"], amr: ["pwd"]) == [])
        #expect(Role.effective(["buyer", "admin"], amr: ["pwd", "otp"]) == ["buyer", "admin"])
        #expect(Role.effective(["vendor"], amr: ["pwd"]) == ["vendor"])
    }

    @Test func recoveryCodesAreTenCharactersAndMatchLoosely() {
        let code = MultiFactor.makeRecoveryCode()
        #expect(code.count == 11 && code.contains("-"))
        #expect(MultiFactor.hashRecoveryCode(code) == MultiFactor.hashRecoveryCode(code.uppercased().replacingOccurrences(of: "-", with: " ")))
        #expect(MultiFactor.hashRecoveryCode(code) != MultiFactor.hashRecoveryCode(MultiFactor.makeRecoveryCode()))
    }
}
