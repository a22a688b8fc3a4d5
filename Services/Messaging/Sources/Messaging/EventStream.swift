import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import Platform
import PostgresNIO
import ServiceLifecycle

/// `GET /v1/events/stream`: the signed-in user's new messages, read marks and notifications as
/// Server-Sent Events. What a stream carries is written to `stream_events` in the transaction
/// that caused it, with a `pg_notify` that commits with it; every replica listens on one
/// connection and wakes the streams of the users named. Each stream reads its user's rows after
/// the last id it sent, so nothing is missed between a wake-up and the read, a client that
/// reconnects with `Last-Event-ID` gets what it missed (rows are kept a day), and a replica
/// holds idle streams for the price of a suspended task each. Heartbeats (`: heartbeat`) every
/// 15 s keep proxies from closing idle connections.
enum EventStream {
    static let channel = "messaging_stream"
    /// The most events one read sends (a reconnect after a long gap reads in steps of this).
    static let readLimit = 500
    static let heartbeat: Duration = .seconds(15)
    /// Rows older than this are pruned; a `Last-Event-ID` before them resumes from what is left.
    static let retention: TimeInterval = 24 * 3600
}

/// The open streams of this replica, by user.
final class StreamHub: Sendable {
    enum Signal: Sendable { case wake, heartbeat }

    private struct State {
        var streams: [UUID: [Int: AsyncStream<Signal>.Continuation]] = [:]
        var next = 0
        var count = 0
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    /// `messaging_event_streams_open`: the streams this replica holds now.
    private let gauge = Gauge(label: "messaging_event_streams_open")

    var openStreams: Int { state.withLockedValue { $0.count } }

    /// A new stream for `user`, or nil once the replica is shutting down.
    func open(for user: UUID) -> (id: Int, signals: AsyncStream<Signal>)? {
        let (signals, continuation) = AsyncStream.makeStream(of: Signal.self, bufferingPolicy: .bufferingNewest(1))
        let id: Int? = state.withLockedValue { state in
            guard !state.closed else { return nil }
            state.next += 1
            state.streams[user, default: [:]][state.next] = continuation
            state.count += 1
            gauge.record(state.count)
            return state.next
        }
        guard let id else { return nil }
        return (id, signals)
    }

    func close(_ id: Int, of user: UUID) {
        let continuation: AsyncStream<Signal>.Continuation? = state.withLockedValue { state in
            let removed = state.streams[user]?.removeValue(forKey: id)
            if state.streams[user]?.isEmpty == true { state.streams[user] = nil }
            if removed != nil { state.count -= 1 }
            gauge.record(state.count)
            return removed
        }
        continuation?.finish()
    }

    func wake(_ users: some Sequence<UUID>) {
        let targets = state.withLockedValue { state in users.flatMap { state.streams[$0].map { Array($0.values) } ?? [] } }
        for continuation in targets { continuation.yield(.wake) }
    }

    func wakeAll() {
        for continuation in state.withLockedValue({ $0.streams.values.flatMap(\.values) }) { continuation.yield(.wake) }
    }

    func heartbeat() {
        for continuation in state.withLockedValue({ $0.streams.values.flatMap(\.values) }) { continuation.yield(.heartbeat) }
    }

    /// Ends every stream (shutdown): their responses finish, so the server can drain.
    func closeAll() {
        let all = state.withLockedValue { state in
            state.closed = true
            defer { state.streams = [:]; state.count = 0; gauge.record(0) }
            return state.streams.values.flatMap(\.values)
        }
        for continuation in all { continuation.finish() }
    }
}

/// Listens for stream notifications and beats the heart; ends the streams at shutdown.
struct StreamService: Service {
    let hub: StreamHub
    let client: PostgresClient
    let logger: Logger

    func run() async throws {
        // At shutdown the streams end first (their responses finish, so the server can drain),
        // then the listener and the heartbeat stop.
        await withGracefulShutdownHandler {
            await cancelWhenGracefulShutdown {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await listen() }
                    group.addTask {
                        while !Task.isCancelled {
                            try? await Task.sleep(for: EventStream.heartbeat)
                            hub.heartbeat()
                        }
                    }
                    await group.next()
                    group.cancelAll()
                }
            }
        } onGracefulShutdown: {
            hub.closeAll()
        }
        hub.closeAll()
    }

    private func listen() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await client.withConnection { connection in
                    try Database.checkOpen(connection)
                    return try await connection.listen(on: EventStream.channel) { notifications in
                        hub.wakeAll()  // anything committed while (re)connecting
                        for try await notification in notifications {
                            let users = notification.payload.split(separator: ",").compactMap { pair in
                                pair.split(separator: ":").first.flatMap { UUID(uuidString: String($0)) }
                            }
                            hub.wake(users)
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("stream listener interrupted", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}

struct StreamRoutes: Sendable {
    let client: PostgresClient
    let hub: StreamHub

    func addRoutes(to router: ServiceRouter) {
        router.group().add(middleware: RequireSignedIn()).get("/v1/events/stream") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let resume = request.headers[HTTPField.Name("Last-Event-ID")!]
            var start: Int64?
            if let resume {
                guard let id = Int64(resume), id >= 0 else {
                    throw Problem.validation([FieldError("Last-Event-ID", "must be the id of an event this stream sent")])
                }
                start = id
            }
            let operation = context.operation
            // Without Last-Event-ID the stream starts now: what is already there is history.
            var from: Int64 = 0
            if let start {
                from = start
            } else {
                from = try await Database.transaction(client, operation) { tx in
                    try await tx.first("SELECT coalesce(max(id), 0) FROM stream_events WHERE user_id = \(caller.userId)", as: Int64.self) ?? 0
                }
            }
            guard let (streamId, signals) = hub.open(for: caller.userId) else {
                throw Problem(.serviceUnavailable, "This replica is shutting down; reconnect.", headers: [.retryAfter: "1"])
            }
            let client = self.client, hub = self.hub, user = caller.userId, resumeAfter = from
            let body = ResponseBody { writer in
                defer { hub.close(streamId, of: user) }
                var last = resumeAfter
                try await writer.write(ByteBuffer(string: "retry: 3000\n: connected\n\n"))
                last = try await Self.send(after: last, of: user, client: client, operation: operation, to: &writer)
                for await signal in signals {
                    switch signal {
                    case .heartbeat: try await writer.write(ByteBuffer(string: ": heartbeat\n\n"))
                    case .wake: last = try await Self.send(after: last, of: user, client: client, operation: operation, to: &writer)
                    }
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store",
                                                   HTTPField.Name("X-Accel-Buffering")!: "no"], body: body)
        }
    }

    /// Writes the user's events after `last`, in steps of `readLimit`; answers the last id sent.
    private static func send(after last: Int64, of user: UUID, client: PostgresClient, operation: OperationContext,
                             to writer: inout any ResponseBodyWriter) async throws -> Int64 {
        var last = last
        while true {
            let events = try await Database.transaction(client, operation) { tx -> [(Int64, String, String)] in
                let rows = try await tx.query("""
                    SELECT id, type, data FROM stream_events WHERE user_id = \(user) AND id > \(last) ORDER BY id LIMIT \(EventStream.readLimit)
                    """)
                var events: [(Int64, String, String)] = []
                for try await row in rows.decode((Int64, String, String).self) { events.append(row) }
                return events
            }
            guard !events.isEmpty else { return last }
            var buffer = ByteBuffer()
            for (id, type, data) in events {
                buffer.writeString("id: \(id)\nevent: \(type)\ndata: \(data)\n\n")
                last = id
            }
            try await writer.write(buffer)
            if events.count < EventStream.readLimit { return last }
        }
    }
}
