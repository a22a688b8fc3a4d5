import Foundation
import Logging

/// What a unit of work knows about itself, handed from the HTTP request (or the event, or the job)
/// that started it into repositories, the outbox, jobs and audit logs: who asked, under which
/// request and trace, the logger that carries them, and the business clock. Passing this one value
/// replaces passing a request id, a `traceparent`, a principal and a logger into every call.
public struct OperationContext: Sendable {
    /// The service doing the work (`listings`): the source of the events it emits.
    public let service: String
    /// The HTTP request id (`X-Request-Id`), when the work serves a request.
    public var requestId: String?
    /// This operation's span; events and jobs it creates continue the trace from here.
    public var trace: TraceParent
    /// The verified caller, when there is one.
    public var principal: Principal?
    /// The process logger with this operation's metadata (request id, trace id, event or job id).
    public var logger: Logger
    /// Business time: what domain code reads instead of `Date()`.
    public let clock: BusinessClock

    public init(service: String, requestId: String? = nil, trace: TraceParent = .make(), principal: Principal? = nil,
                logger: Logger, clock: BusinessClock) {
        self.service = service
        self.requestId = requestId
        self.trace = trace
        self.principal = principal
        self.logger = logger
        self.clock = clock
    }

    /// The business time now.
    public var now: Date { clock.now() }

    /// The `traceparent` to hand on to what this operation starts (events, jobs, calls).
    public var traceparent: String { trace.description }

    /// CloudEvents `source` of the events this service emits.
    public var eventSource: String { "/marketplace/\(service)" }

    /// The verified caller, or a 401 problem.
    public func requirePrincipal() throws -> Principal {
        guard let principal else { throw Problem(.unauthorized, "A valid access token is required.", headers: [.wwwAuthenticate: "Bearer"]) }
        return principal
    }

    /// A copy whose logger carries one more metadata value.
    public func with(_ key: String, _ value: String) -> OperationContext {
        var copy = self
        copy.logger[metadataKey: key] = .string(value)
        return copy
    }

    /// For one-off commands and tests: a fresh trace, no caller.
    public static func background(service: String, logger: Logger, clock: BusinessClock = BusinessClock()) -> OperationContext {
        OperationContext(service: service, logger: logger, clock: clock)
    }
}
