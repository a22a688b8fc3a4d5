import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import Platform

@Suite struct ProblemTests {
    let logger = Logger(label: "test")

    func body(_ response: Response) async throws -> [String: Any] {
        let writer = CollectingWriter()
        try await response.body.write(writer)
        return try JSONSerialization.jsonObject(with: Data(buffer: writer.buffer.withLockedValue { $0 })) as! [String: Any]
    }

    @Test func problemResponseIsRFC9457() async throws {
        let problem = Problem.validation([FieldError("email", "is required")])
        let response = problem.response(instance: "/v1/auth/register", requestId: "abc")
        #expect(response.status == .unprocessableContent)
        #expect(response.headers[.contentType] == "application/problem+json")
        let json = try await body(response)
        #expect(json["type"] as? String == "https://marketplace.example/problems/validation-failed")
        #expect(json["status"] as? Int == 422)
        #expect(json["instance"] as? String == "/v1/auth/register")
        #expect(json["requestId"] as? String == "abc")
        let errors = json["errors"] as? [[String: String]]
        #expect(errors == [["field": "email", "message": "is required"]])
    }

    @Test func malformedJSONIsA400() {
        #expect(throws: Problem(.malformedRequest, "The body is not valid JSON.")) {
            _ = try JSONBody.decode([String: String].self, from: Data("{\"a\":".utf8))
        }
        #expect(throws: Problem(.malformedRequest, "A JSON body is required.")) {
            _ = try JSONBody.decode([String: String].self, from: Data())
        }
    }

    struct Login: Decodable { var email: String; var count: Int }

    @Test func missingAndMistypedFieldsAre422NamingTheField() {
        #expect(throws: Problem.validation([FieldError("email", "is required")])) {
            _ = try JSONBody.decode(Login.self, from: Data("{\"count\":1}".utf8))
        }
        #expect(throws: Problem.validation([FieldError("count", "must be an integer")])) {
            _ = try JSONBody.decode(Login.self, from: Data("{\"email\":\"a\",\"count\":\"x\"}".utf8))
        }
    }

    @Test func routerErrorsMapToProblems() {
        #expect(ProblemMiddleware<AppRequestContext>.problem(for: HTTPError(.notFound), logger: logger).kind == .notFound)
        #expect(ProblemMiddleware<AppRequestContext>.problem(for: HTTPError(.contentTooLarge), logger: logger).kind == .payloadTooLarge)
        #expect(ProblemMiddleware<AppRequestContext>.problem(for: HTTPError(.methodNotAllowed), logger: logger).kind == .methodNotAllowed)
    }

    struct Secret: Error, CustomStringConvertible { var description: String { "password=hunter2 at db.internal" } }

    @Test func unexpectedErrorsRevealNothing() async throws {
        let problem = ProblemMiddleware<AppRequestContext>.problem(for: Secret(), logger: logger)
        #expect(problem.kind == .internalError)
        let json = try await body(problem.response(instance: "/x", requestId: "r1"))
        let text = String(describing: json)
        #expect(!text.contains("hunter2"))
        #expect(json["status"] as? Int == 500)
    }

    enum Domain: Error, ProblemConvertible {
        case taken
        var problem: Problem { Problem(.conflict, "taken", typeSlug: "email-taken") }
    }

    @Test func domainErrorsUseTheirOwnType() {
        let problem = ProblemMiddleware<AppRequestContext>.problem(for: Domain.taken, logger: logger)
        #expect(problem.status == .conflict)
        #expect(problem.type == "https://marketplace.example/problems/email-taken")
    }
}

final class CollectingWriter: ResponseBodyWriter, @unchecked Sendable {
    let buffer = NIOLockedValueBox(ByteBuffer())
    func write(_ buffer: ByteBuffer) async throws {
        var incoming = buffer
        _ = self.buffer.withLockedValue { $0.writeBuffer(&incoming) }
    }
    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
