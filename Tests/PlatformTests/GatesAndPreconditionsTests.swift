import Foundation
import HTTPTypes
import Hummingbird
@testable import Platform
import Testing

/// Roles, gates, conditional requests and the route book: pure rules, walked exhaustively.
struct GatesAndPreconditionsTests {
    static let user = UUID(uuidString: "0192f1a0-0000-7000-8000-000000000001")!

    static func principal(_ roles: [Role], secondFactor: Bool, verified: Bool = true) -> Principal {
        Principal(userId: user, roles: roles.map(\.rawValue), emailVerified: verified, authenticationMethods: secondFactor ? ["pwd", "otp"] : ["pwd"])
    }

    /// Every role set × second factor × gate: a staff role counts only with a second factor.
    @Test func theRoleGateWalkedOverEveryRoleAndFactor() throws {
        let roleSets: [[Role]] = [[], [.buyer], [.vendor], [.moderator], [.admin], [.buyer, .moderator], [.vendor, .admin]]
        let gates: [Set<Role>] = [[.buyer], [.vendor], [.moderator, .admin], [.admin], [.buyer, .vendor]]
        for roles in roleSets {
            for secondFactor in [false, true] {
                let caller = Self.principal(roles, secondFactor: secondFactor)
                for gate in gates {
                    let held = roles.filter { gate.contains($0) && (!$0.isStaff || secondFactor) }
                    if held.isEmpty {
                        #expect(throws: Problem.self, "\(roles) mfa=\(secondFactor) through \(gate)") { try Gates.requireRole(gate, of: caller) }
                    } else {
                        #expect(throws: Never.self, "\(roles) mfa=\(secondFactor) through \(gate)") { try Gates.requireRole(gate, of: caller) }
                    }
                }
                #expect(caller.isStaff == (secondFactor && roles.contains(where: \.isStaff)))
            }
        }
        do {
            try Gates.requireRole([.admin], of: nil)
            Issue.record("no caller passed a gate")
        } catch let problem as Problem {
            #expect(problem.status == .unauthorized)
        }
        do {
            try Gates.requireRole([.admin], of: Self.principal([.admin], secondFactor: false))
        } catch let problem as Problem {
            #expect(problem.status == .forbidden && problem.detail?.contains("second factor") == true)
        }
    }

    @Test func theVerifiedEmailGate() throws {
        #expect(throws: Never.self) { try Gates.requireVerifiedEmail(Self.principal([.buyer], secondFactor: false)) }
        do {
            try Gates.requireVerifiedEmail(Self.principal([.vendor], secondFactor: true, verified: false))
            Issue.record("an unverified caller passed")
        } catch let problem as Problem {
            #expect(problem.status == .forbidden && problem.typeSlug == "email-not-verified")
        }
    }

    @Test func tokensCarryStaffRolesOnlyFromSecondFactorSessions() {
        #expect(Role.effective(["buyer", "admin"], amr: ["pwd"]) == ["buyer"])
        #expect(Role.effective(["buyer", "admin"], amr: ["pwd", "otp"]) == ["buyer", "admin"])
    }

    static func request(_ headers: HTTPFields) -> Request {
        Request(head: HTTPRequest(method: .patch, scheme: "http", authority: "x", path: "/v1/things/1", headerFields: headers), body: .init(buffer: .init()))
    }

    @Test func ifMatchIsRequiredAndMustNameTheCurrentVersion() throws {
        do {
            _ = try Versioning.required(Self.request([:]))
            Issue.record("a PATCH without If-Match was let through")
        } catch let problem as Problem {
            #expect(problem.status == .preconditionRequired && problem.type.hasSuffix("/precondition-required"))
        }
        let cases: [(String, Int, Bool)] = [
            ("\"3\"", 3, true), ("\"3\"", 4, false), ("W/\"3\"", 3, true), ("\"2\", \"3\"", 3, true), ("*", 99, true),
            ("3", 3, false), ("\"three\"", 3, false), ("", 3, false),
        ]
        for (header, current, admitted) in cases {
            let precondition = try Versioning.required(Self.request([.ifMatch: header]))
            if admitted {
                #expect(throws: Never.self, "\(header) at \(current)") { try Versioning.check(precondition, current: current) }
            } else {
                do {
                    try Versioning.check(precondition, current: current)
                    Issue.record("\(header) admitted version \(current)")
                } catch let problem as Problem {
                    #expect(problem.status == .preconditionFailed && problem.typeSlug == "version-mismatch")
                    #expect(problem.headers[.eTag] == "\"\(current)\"")
                }
            }
        }
        #expect(throws: Never.self, "actions honour If-Match only when sent") { try Versioning.check(nil, current: 7) }
    }

    @Test func ifNoneMatchComparesWeakly() {
        let etag = Versioning.etag(of: Array("{\"a\":1}".utf8))
        #expect(etag.hasPrefix("W/\""))
        #expect(Versioning.notModified(Self.request([.ifNoneMatch: etag]), etag: etag))
        #expect(Versioning.notModified(Self.request([.ifNoneMatch: "\"x\", " + etag]), etag: etag))
        #expect(Versioning.notModified(Self.request([.ifNoneMatch: "*"]), etag: "\"5\""))
        #expect(Versioning.notModified(Self.request([.ifNoneMatch: "\"5\""]), etag: "W/\"5\""))
        #expect(!Versioning.notModified(Self.request([.ifNoneMatch: "\"6\""]), etag: "\"5\""))
        #expect(!Versioning.notModified(Self.request([:]), etag: "\"5\""))
    }

    @Test func theRouteBookMatchesTemplatesAndListsTheirMethods() {
        let book = RouteBook()
        book.record("/v1/listings", .get)
        book.record("/v1/listings", .post)
        book.record("/v1/listings/{id}", .get)
        book.record("/v1/listings/{id}", .patch)
        book.record("/v1/listings/{id}/publish", .post)
        #expect(book.methods(for: "/v1/listings") == ["GET", "HEAD", "POST"])
        #expect(book.methods(for: "/v1/listings/abc") == ["GET", "HEAD", "PATCH"])
        #expect(book.methods(for: "/v1/listings/abc/publish") == ["POST"])
        #expect(book.methods(for: "/v1/listings/abc/unknown") == nil)
        #expect(book.methods(for: "/v1/other") == nil)
    }
}
