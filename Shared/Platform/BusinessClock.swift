import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import PostgresNIO

/// The time domain code lives in: the wall clock, plus an offset that only a test clock moves.
/// Renewals, deadlines and timers read it; security time (token expiry, signature tolerance,
/// rate limits) stays on the wall clock and never reads this.
public final class BusinessClock: Sendable {
    private let offset: NIOLockedValueBox<Int64>
    private let observers = NIOLockedValueBox<[@Sendable () -> Void]>([])

    /// A clock `offsetMilliseconds` ahead of the wall clock (zero outside dev and tests).
    public init(offsetMilliseconds: Int64 = 0) {
        self.offset = NIOLockedValueBox(offsetMilliseconds)
    }

    public func now() -> Date {
        Date().addingTimeInterval(Double(offset.withLockedValue { $0 }) / 1000)
    }

    public var offsetMilliseconds: Int64 { offset.withLockedValue { $0 } }

    /// Sets the offset (never backwards: timers that fired stay fired) and wakes whoever waits on time.
    func set(offsetMilliseconds: Int64) {
        offset.withLockedValue { $0 = max($0, offsetMilliseconds) }
        for observer in observers.withLockedValue({ $0 }) { observer() }
    }

    /// `callback` runs whenever the clock jumps forward (the job runner re-reads what is due).
    public func onAdvance(_ callback: @escaping @Sendable () -> Void) {
        observers.withLockedValue { $0.append(callback) }
    }
}

/// The dev and test clock (`TEST_CLOCK=on`): `POST /internal/test-clock {advanceSeconds}` on the
/// service's own port moves its business clock forward. The offset is kept in the service's
/// `business_clock` table, so a restarted service keeps it. Never enabled by a production manifest;
/// the gateway never routes `/internal/`.
public struct TestClock: Sendable {
    let client: PostgresClient
    let clock: BusinessClock

    public init(client: PostgresClient, clock: BusinessClock) {
        self.client = client
        self.clock = clock
    }

    /// Loads the persisted offset into the clock (at start).
    public func load(logger: Logger) async throws {
        try await Database.query(client, "SELECT offset_ms FROM business_clock", logger: logger) { rows in
            for try await offset in rows.decode(Int64.self) { clock.set(offsetMilliseconds: offset) }
        }
        if clock.offsetMilliseconds != 0 {
            logger.warning("test clock is ahead of the wall clock", metadata: ["clock.offset_seconds": "\(clock.offsetMilliseconds / 1000)"])
        }
    }

    /// Moves the clock forward by `seconds` and persists the new offset.
    public func advance(seconds: Int64, logger: Logger) async throws -> State {
        try await Database.query(client, """
            INSERT INTO business_clock (singleton, offset_ms, updated_at) VALUES (true, \(seconds * 1000), now())
            ON CONFLICT (singleton) DO UPDATE SET offset_ms = business_clock.offset_ms + EXCLUDED.offset_ms, updated_at = now()
            RETURNING offset_ms
            """, logger: logger) { rows in
            for try await offset in rows.decode(Int64.self) { clock.set(offsetMilliseconds: offset) }
        }
        logger.info("test clock advanced", metadata: ["clock.advance_seconds": "\(seconds)", "clock.offset_seconds": "\(clock.offsetMilliseconds / 1000)"])
        return state
    }

    public var state: State { State(now: clock.now(), offsetSeconds: Double(clock.offsetMilliseconds) / 1000) }

    public struct State: Codable, Sendable {
        public var now: Date
        public var offsetSeconds: Double
    }

    struct Advance: Decodable {
        var advanceSeconds: Int64
    }

    /// At most ten years per call: enough for any test, small enough that dates stay sane.
    static let maximumAdvance: Int64 = 10 * 366 * 86_400

    public func addRoutes<Context: ServiceRequestContext>(to router: some RouterMethods<Context>, bodyLimit: Int) {
        router.get("/internal/test-clock") { _, _ -> Response in
            try JSONResponse.make(state, cacheControl: "no-store")
        }
        router.post("/internal/test-clock") { request, context -> Response in
            let body = try await JSONBody.decode(Advance.self, from: request, limit: bodyLimit)
            guard (0...Self.maximumAdvance).contains(body.advanceSeconds) else {
                throw Problem.validation([FieldError("advanceSeconds", "must be an integer from 0 to \(Self.maximumAdvance)")])
            }
            return try JSONResponse.make(try await advance(seconds: body.advanceSeconds, logger: context.logger), cacheControl: "no-store")
        }
    }
}
