import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOPosix

/// Who is calling, as proven by a verified access token.
public struct Principal: Sendable, Equatable {
    public var userId: UUID
    public var roles: [String]
    public var tokenId: String?
    /// The sign-in session the token belongs to, when the token names one.
    public var sessionId: UUID?
    /// The account's email address was proven when the token was issued (`email_verified`).
    /// Publishing listings and placing orders require it.
    public var emailVerified: Bool
    /// How the session was signed in (`amr`: `pwd`, `otp`); staff roles count only with `otp`.
    public var authenticationMethods: [String]

    public init(userId: UUID, roles: [String], tokenId: String? = nil, sessionId: UUID? = nil, emailVerified: Bool = false,
                authenticationMethods: [String] = []) {
        self.userId = userId
        self.roles = roles
        self.tokenId = tokenId
        self.sessionId = sessionId
        self.emailVerified = emailVerified
        self.authenticationMethods = authenticationMethods
    }
}

/// The context every service's handlers receive.
public protocol ServiceRequestContext: RequestContext {
    var requestId: String? { get set }
    var principal: Principal? { get set }
    /// This request's span of the trace (continued from `traceparent`, or a new trace).
    var trace: TraceParent? { get set }
    /// The service and its business clock, set at the start of every request.
    var service: ServiceIdentity? { get set }
}

/// Which service a request is served by, and its clock: what an `OperationContext` needs besides the request.
public struct ServiceIdentity: Sendable {
    public let name: String
    public let clock: BusinessClock

    public init(name: String, clock: BusinessClock) {
        self.name = name
        self.clock = clock
    }
}

extension ServiceRequestContext {
    /// The verified caller, or a 401 problem.
    public func requirePrincipal() throws -> Principal {
        guard let principal else { throw Problem(.unauthorized, "A valid access token is required.", headers: [.wwwAuthenticate: "Bearer"]) }
        return principal
    }

    /// The path's `name` parameter as an id. One that is not a UUID names nothing, like an unknown
    /// one: `notFound` (the resource's 404) either way.
    public func uuidParameter(_ name: String = "id", notFound: some Error) throws -> UUID {
        guard let text = parameters.get(name), text.utf8.count == 36, let id = UUID(uuidString: text) else { throw notFound }
        return id
    }

    /// The request as an operation: what repositories, the outbox and jobs are handed.
    public var operation: OperationContext {
        OperationContext(service: service?.name ?? "unknown", requestId: requestId, trace: trace ?? .make(), principal: principal,
                         logger: logger, clock: service?.clock ?? BusinessClock())
    }
}

public struct AppRequestContext: ServiceRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestId: String?
    public var principal: Principal?
    public var trace: TraceParent?
    public var service: ServiceIdentity?
    /// The peer's IP address as the connection reports it (never taken from headers).
    public var clientAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.clientAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Values a handler returns are encoded the suite's way (explicit nulls, lower-case UUIDs).
    public var responseEncoder: SuiteResponseEncoder { SuiteResponseEncoder() }
}

extension HTTPField.Name {
    public static let requestId = Self("X-Request-Id")!
    public static let clientRequestId = Self("X-Client-Request-Id")!
    public static let traceContext = Self("traceparent")!
}

/// Starts every request's operation: the request id (the gateway's `X-Request-Id`, or a new one
/// when reached directly), the trace continued from `traceparent`, the service and its clock, and
/// the ids on the log metadata. Echoes the request id on the response.
public struct RequestIdMiddleware<Context: ServiceRequestContext>: RouterMiddleware {
    let service: ServiceIdentity?

    public init(service: ServiceIdentity? = nil) { self.service = service }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let requestId = request.headers[.requestId].flatMap(RequestIds.sanitized) ?? RequestIds.make()
        context.requestId = requestId
        context.service = service
        context.logger[metadataKey: "request.id"] = .string(requestId)
        let trace = request.headers[.traceContext].flatMap(TraceParent.init)?.child() ?? TraceParent.make()
        context.trace = trace
        context.logger[metadataKey: "trace.id"] = .string(trace.traceId)
        var response = try await next(request, context)
        response.headers[.requestId] = requestId
        return response
    }
}

public enum RequestIds {
    /// A random 128-bit id in hex.
    public static func make() -> String {
        var generator = IdRandomness()
        return Hex.encode(generator.next() as UInt64) + Hex.encode(generator.next() as UInt64)
    }

    /// Accepts an id only if it is short and plain, so nothing odd reaches logs.
    public static func sanitized(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count),
              value.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E })
        else { return nil }
        return value
    }
}

/// W3C trace context `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
public struct TraceParent: Sendable, Equatable, CustomStringConvertible {
    public var traceId: String
    public var parentId: String
    public var flags: String

    public init?(_ header: String) {
        let parts = header.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0] != "ff",
              parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
              parts.allSatisfy({ $0.allSatisfy(\.isHexDigit) }),
              parts[1] != String(repeating: "0", count: 32), parts[2] != String(repeating: "0", count: 16)
        else { return nil }
        self.traceId = parts[1].lowercased()
        self.parentId = parts[2].lowercased()
        self.flags = parts[3].lowercased()
    }

    public init(traceId: String, parentId: String, flags: String = "01") {
        self.traceId = traceId
        self.parentId = parentId
        self.flags = flags
    }

    /// A new trace rooted here.
    public static func make() -> TraceParent {
        var generator = IdRandomness()
        let trace = Hex.encode(generator.next() as UInt64) + Hex.encode(generator.next() as UInt64)
        return TraceParent(traceId: trace, parentId: Hex.encode(generator.next() as UInt64 | 1))
    }

    /// The same trace with a new span id for the next hop.
    public func child() -> TraceParent {
        var generator = IdRandomness()
        return TraceParent(traceId: traceId, parentId: Hex.encode(generator.next() as UInt64 | 1), flags: flags)
    }

    public var description: String { "00-\(traceId)-\(parentId)-\(flags)" }
}

enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// 16 lower-case hex digits.
    static func encode(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            for index in 0..<16 {
                buffer[index] = digits[Int((value >> (60 - 4 * UInt64(index))) & 0xF)]
            }
            return 16
        }
    }
}

/// Kernel randomness for request, trace and span ids, fetched 4 KiB at a time per thread: one
/// system call serves about a hundred requests instead of five calls for each.
struct IdRandomness: RandomNumberGenerator {
    /// One thread's unread random bytes; only ever touched by that thread.
    final class Reserve: @unchecked Sendable {
        static let size = 4096
        var bytes = [UInt8](repeating: 0, count: Reserve.size)
        var offset = Reserve.size
    }

    private static let reserves = ThreadSpecificVariable<Reserve>()

    mutating func next() -> UInt64 {
        let reserve: Reserve
        if let existing = Self.reserves.currentValue {
            reserve = existing
        } else {
            reserve = Reserve()
            Self.reserves.currentValue = reserve
        }
        if reserve.offset + 8 > Reserve.size {
            // glibc 2.36+ and Darwin: the whole buffer from the kernel's generator in one call.
            reserve.bytes.withUnsafeMutableBytes { arc4random_buf($0.baseAddress!, Reserve.size) }
            reserve.offset = 0
        }
        let value = reserve.bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: reserve.offset, as: UInt64.self) }
        reserve.offset += 8
        return value
    }
}
