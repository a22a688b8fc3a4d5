import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO

/// One invalid field in a request body or query, reported with a 422.
public struct FieldError: Codable, Sendable, Equatable {
    public var field: String
    public var message: String

    public init(_ field: String, _ message: String) {
        self.field = field
        self.message = message
    }
}

/// An RFC 9457 problem: every error any service or the gateway answers is one of these.
public struct Problem: Error, Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case malformedRequest = "malformed-request"
        case unauthorized
        /// A payment was refused (a declined card): what Stripe answers with 402.
        case paymentRequired = "payment-required"
        case forbidden
        case notFound = "not-found"
        case methodNotAllowed = "method-not-allowed"
        case conflict
        case preconditionFailed = "precondition-failed"
        case preconditionRequired = "precondition-required"
        case payloadTooLarge = "payload-too-large"
        case validationFailed = "validation-failed"
        case rateLimited = "rate-limited"
        case internalError = "internal"
        case badGateway = "bad-gateway"
        case serviceUnavailable = "service-unavailable"
        case gatewayTimeout = "gateway-timeout"
        case requestTimeout = "request-timeout"
        case headersTooLarge = "headers-too-large"

        public var status: HTTPResponse.Status {
            switch self {
            case .malformedRequest: .badRequest
            case .unauthorized: .unauthorized
            case .paymentRequired: HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required")
            case .forbidden: .forbidden
            case .notFound: .notFound
            case .methodNotAllowed: .methodNotAllowed
            case .conflict: .conflict
            case .preconditionFailed: .preconditionFailed
            case .preconditionRequired: .preconditionRequired
            case .payloadTooLarge: .contentTooLarge
            case .validationFailed: .unprocessableContent
            case .rateLimited: .tooManyRequests
            case .internalError: .internalServerError
            case .badGateway: .badGateway
            case .serviceUnavailable: .serviceUnavailable
            case .gatewayTimeout: .gatewayTimeout
            case .requestTimeout: .requestTimeout
            case .headersTooLarge: .requestHeaderFieldsTooLarge
            }
        }

        public var title: String {
            switch self {
            case .malformedRequest: "The request could not be read"
            case .unauthorized: "Authentication is required"
            case .paymentRequired: "The payment was refused"
            case .forbidden: "Not allowed"
            case .notFound: "Not found"
            case .methodNotAllowed: "Method not allowed"
            case .conflict: "Conflict"
            case .preconditionFailed: "Precondition failed"
            case .preconditionRequired: "A precondition is required"
            case .payloadTooLarge: "The request body is too large"
            case .validationFailed: "The request is invalid"
            case .rateLimited: "Too many requests"
            case .internalError: "Internal error"
            case .badGateway: "The upstream service could not be reached"
            case .serviceUnavailable: "The service is unavailable"
            case .gatewayTimeout: "The upstream service did not answer in time"
            case .requestTimeout: "The request took too long to arrive"
            case .headersTooLarge: "The request headers are too large"
            }
        }
    }

    public static let typeBase = "https://marketplace.example/problems/"

    public var kind: Kind
    public var detail: String?
    public var fieldErrors: [FieldError]
    /// A more specific type slug than the kind's (for example `email-taken` for a 409).
    public var typeSlug: String?
    public var headers: HTTPFields

    public init(_ kind: Kind, _ detail: String? = nil, fieldErrors: [FieldError] = [], typeSlug: String? = nil, headers: HTTPFields = [:]) {
        self.kind = kind
        self.detail = detail
        self.fieldErrors = fieldErrors
        self.typeSlug = typeSlug
        self.headers = headers
    }

    public static func validation(_ errors: [FieldError]) -> Problem {
        Problem(.validationFailed, "One or more fields are invalid.", fieldErrors: errors)
    }

    /// 409 `invalid-transition`: the resource's state machine does not allow `action` from `status`.
    public static func invalidTransition(_ action: String, from status: String, resource: String) -> Problem {
        let article = resource.first.map { "aeiou".contains($0.lowercased()) } == true ? "An" : "A"
        return Problem(.conflict, "\(article) \(resource) that is \(status) cannot be \(action).", typeSlug: "invalid-transition")
    }

    public var status: HTTPResponse.Status { kind.status }
    public var type: String { Self.typeBase + (typeSlug ?? kind.rawValue) }

    /// Every member is always present (the suite's rule for absent values has nothing to apply
    /// to); `errors` belongs to validation problems only, so they are a type of their own.
    struct Body: Encodable {
        var type: String
        var title: String
        var status: Int
        var detail: String
        var instance: String
        var requestId: String
    }

    struct ValidationBody: Encodable {
        var type: String
        var title: String
        var status: Int
        var detail: String
        var instance: String
        var requestId: String
        var errors: [FieldError]
    }

    /// The problem+json body; `instance` is the request path, `requestId` ties it to the logs.
    public func body(instance: String?, requestId: String?) -> Data {
        let (detail, instance, requestId) = (detail ?? kind.title + ".", instance ?? "", requestId ?? "")
        let status = Int(self.status.code)
        let encoded: [UInt8]?
        if fieldErrors.isEmpty {
            encoded = try? JSONWriter.encode(Body(type: type, title: kind.title, status: status, detail: detail, instance: instance, requestId: requestId))
        } else {
            encoded = try? JSONWriter.encode(ValidationBody(type: type, title: kind.title, status: status, detail: detail, instance: instance,
                                                            requestId: requestId, errors: fieldErrors))
        }
        return Data(encoded ?? Array("{\"status\":500}".utf8))
    }

    /// The problem+json response; `instance` is the request path, `requestId` ties it to the logs.
    public func response(instance: String?, requestId: String?) -> Response {
        let data = body(instance: instance, requestId: requestId)
        var fields = headers
        fields[.contentType] = "application/problem+json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns every error thrown below it into problem+json, so no handler needs to format errors itself.
/// Unexpected errors become a 500 that reveals nothing; the details go to the log with the request id.
public struct ProblemMiddleware<Context: ServiceRequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let problem = Self.problem(for: error, logger: context.logger)
            return problem.response(instance: request.uri.path, requestId: context.requestId)
        }
    }

    /// Maps any error to the problem a client should see.
    public static func problem(for error: any Error, logger: Logger) -> Problem {
        switch error {
        case let problem as Problem:
            return problem
        case let transaction as PostgresTransactionError:
            if let inner = transaction.closureError { return problem(for: inner, logger: logger) }
            return problem(for: transaction.commitError ?? transaction.beginError ?? transaction.rollbackError ?? error, logger: logger)
        case let convertible as any ProblemConvertible:
            return convertible.problem
        case is NIOTooManyBytesError:
            return Problem(.payloadTooLarge, "The request body exceeds the limit.")
        case _ where Database.isConnectionLoss(error):
            // Postgres restarting or failing over under the request: nothing was committed.
            return Problem(.serviceUnavailable, "The database is briefly unavailable; try again shortly.", headers: [.retryAfter: "1"])
        case let psql as PSQLError:
            if let state = SQLState(of: psql), let problem = state.problem {
                return problem
            }
            if let state = psql.serverInfo?[.sqlState], state.hasPrefix("22") {
                // Data exceptions (a NUL byte in text, a number out of range) come from input.
                return Problem(.malformedRequest, "The request contains a value that cannot be stored.")
            }
            logger.error("database error", metadata: ["error": "\(String(reflecting: psql))"])
            return Problem(.internalError, "An unexpected error occurred.")
        case let http as HTTPError:
            switch http.status {
            case .notFound: return Problem(.notFound, "No resource at this path.")
            case .methodNotAllowed: return Problem(.methodNotAllowed)
            case .contentTooLarge: return Problem(.payloadTooLarge, "The request body exceeds the limit.")
            case .badRequest: return Problem(.malformedRequest, http.body)
            case .unauthorized: return Problem(.unauthorized, headers: [.wwwAuthenticate: "Bearer"])
            default:
                if http.status.code < 500, let kind = Problem.Kind.allCases.first(where: { $0.status == http.status }) {
                    return Problem(kind, http.body)
                }
                logger.error("unexpected http error", metadata: ["status": "\(http.status.code)"])
                return Problem(.internalError, "An unexpected error occurred.")
            }
        case let parser as HTTPParserError:
            // The request broke off or was malformed mid-body (often the caller gave up on it):
            // the caller's fault, and usually nobody is left to read the answer.
            logger.info("request body unreadable", metadata: ["error": "\(String(reflecting: parser))"])
            return Problem(.malformedRequest, "The request body ended early or is malformed.")
        default:
            logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            return Problem(.internalError, "An unexpected error occurred.")
        }
    }
}

/// A domain error that knows which problem it is; each service maps its errors in one place this way.
public protocol ProblemConvertible: Error {
    var problem: Problem { get }
}

/// The SQLSTATEs the suite treats specially, and the problem each means for a client: one table,
/// instead of codes written out wherever an error is caught.
public enum SQLState: String, Sendable, CaseIterable {
    case uniqueViolation = "23505"
    case foreignKeyViolation = "23503"
    case checkViolation = "23514"
    case serializationFailure = "40001"
    case deadlockDetected = "40P01"
    case lockNotAvailable = "55P03"
    case queryCanceled = "57014"
    case insufficientPrivilege = "42501"

    /// The SQLSTATE an error carries, if it is one of these (looking inside transaction wrappers).
    public init?(of error: any Error) {
        switch error {
        case let psql as PSQLError:
            guard let code = psql.serverInfo?[.sqlState], let state = SQLState(rawValue: code) else { return nil }
            self = state
        case let wrapped as PostgresTransactionError:
            guard let inner = [wrapped.closureError, wrapped.commitError, wrapped.beginError].compactMap({ $0 })
                .lazy.compactMap({ SQLState(of: $0) }).first else { return nil }
            self = inner
        default:
            return nil
        }
    }

    /// Conflicts that go away when the transaction runs again.
    public var isTransient: Bool { self == .serializationFailure || self == .deadlockDetected }

    /// What a client is told when the error reaches the edge unhandled; nil: a 500 (a bug here).
    public var problem: Problem? {
        switch self {
        case .uniqueViolation: Problem(.conflict, "The resource already exists.")
        case .serializationFailure, .deadlockDetected:
            Problem(.serviceUnavailable, "The request conflicted with another one; retry it.", headers: [.retryAfter: "1"])
        case .lockNotAvailable, .queryCanceled:
            Problem(.serviceUnavailable, "The resource is busy; retry it.", headers: [.retryAfter: "1"])
        case .foreignKeyViolation, .checkViolation, .insufficientPrivilege: nil
        }
    }
}
