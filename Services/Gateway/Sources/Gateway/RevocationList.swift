import Contracts
import Foundation
import NIOConcurrencyHelpers

/// The access tokens identity revoked before they expire, learnt from `sessions_revoked` events:
/// a token is refused if its session was revoked, or if it was issued before one of its user's
/// not-before times (outside the session that event kept).
///
/// Memory stays bounded: an access token lives 15 minutes and verifiers allow 60 s of clock skew,
/// so an entry is forgotten ``retention`` after its not-before time; a user needs at most two
/// not-before cutoffs however many events name them (see ``UserCutoffs``).
public final class RevocationList: Sendable {
    /// How long after its not-before time an entry still matters: 15 minutes of token lifetime,
    /// 60 s of verifier skew, 60 s of margin for the gateway's clock against identity's.
    public static let retention: Int64 = 17 * 60

    /// Why a token is refused.
    public enum Revocation: String, Sendable, Equatable {
        /// Its session was revoked.
        case session
        /// It was issued before its user's not-before time.
        case issuedBeforeNotBefore = "issued-before-not-before"
    }

    struct State {
        /// Revoked session → the latest not-before time that named it.
        var sessions: [UUID: Int64] = [:]
        var users: [UUID: UserCutoffs] = [:]
        var lastPrune: Int64

        var entryCount: Int {
            sessions.count + users.values.reduce(0) { $0 + $1.count }
        }
    }

    private let state: NIOLockedValueBox<State>
    private let now: @Sendable () -> Date
    /// A full sweep runs on insert at most this often; ``prune()`` runs it on demand.
    private let sweepInterval: Int64 = 30

    /// - Parameter now: The clock deciding what is old enough to forget; injected by tests.
    public init(now: @escaping @Sendable () -> Date = { Date() }) {
        self.now = now
        self.state = NIOLockedValueBox(State(lastPrune: Self.seconds(now())))
    }

    /// Records a revocation. Returns false (and records nothing) when its not-before time is
    /// more than ``retention`` old: every token it concerns has expired.
    @discardableResult
    public func apply(_ event: SessionsRevokedV1) -> Bool {
        let current = Self.seconds(now())
        // Tokens carry whole seconds: one issued in the revocation's own second (iat == floor) may
        // be the first token after it, so only iat < floor(notBefore) is refused.
        let notBefore = Int64(event.notBefore.timeIntervalSince1970.rounded(.down))
        guard notBefore + Self.retention > current else { return false }
        state.withLockedValue { state in
            for session in event.sessionIds {
                state.sessions[session] = max(notBefore, state.sessions[session] ?? notBefore)
            }
            if event.scope != .sessions {
                state.users[event.userId, default: UserCutoffs()].add(notBefore: notBefore, kept: event.keptSessionId)
            }
            if current - state.lastPrune >= sweepInterval {
                Self.prune(&state, at: current)
            }
        }
        return true
    }

    /// Why the token of `subject` (`sub`) in `sessionId` (`sid`) issued at `issuedAt` (`iat`,
    /// seconds) is revoked, or nil if it is not.
    public func revocation(subject: String, sessionId: String?, issuedAt: Int64) -> Revocation? {
        let session = sessionId.flatMap(UUID.init(uuidString:))
        guard let user = UUID(uuidString: subject) else { return nil }
        return state.withLockedValue { state in
            if let session, state.sessions[session] != nil { return .session }
            if let cutoffs = state.users[user], cutoffs.revokes(issuedAt: issuedAt, session: session) { return .issuedBeforeNotBefore }
            return nil
        }
    }

    public func isRevoked(subject: String, sessionId: String?, issuedAt: Int64) -> Bool {
        revocation(subject: subject, sessionId: sessionId, issuedAt: issuedAt) != nil
    }

    /// Forgets every entry whose not-before time is more than ``retention`` old; returns how many remain.
    @discardableResult
    public func prune() -> Int {
        let current = Self.seconds(now())
        return state.withLockedValue { state in
            Self.prune(&state, at: current)
            return state.entryCount
        }
    }

    /// Revoked sessions plus not-before cutoffs held (the `gateway_revocation_entries` gauge).
    public var entryCount: Int {
        state.withLockedValue { $0.entryCount }
    }

    private static func prune(_ state: inout State, at current: Int64) {
        let forgetBefore = current - retention
        state.sessions = state.sessions.filter { $0.value > forgetBefore }
        state.users = state.users.compactMapValues { cutoffs in
            var cutoffs = cutoffs
            cutoffs.forget(before: forgetBefore)
            return cutoffs.isEmpty ? nil : cutoffs
        }
        state.lastPrune = current
    }

    private static func seconds(_ date: Date) -> Int64 {
        Int64(date.timeIntervalSince1970.rounded(.down))
    }
}

/// One user's not-before cutoffs, reduced to at most two that refuse exactly the tokens the
/// events they came from refuse together. Each event (t, k) refuses tokens with `iat < t` and
/// `sid != k` (every token when k is nil). Two events keeping different sessions refuse every
/// token issued before the earlier of them (no token belongs to both kept sessions), so the
/// events of a user always reduce to `all` (refuse every token issued before it) and one
/// `exceptKept` later than `all` (refuse those issued before it outside its kept session).
/// A later event without a kept session therefore never inherits an earlier event's exemption.
struct UserCutoffs: Equatable {
    struct KeptCutoff: Equatable {
        var notBefore: Int64
        var session: UUID
    }

    /// Every token issued before this is refused.
    private(set) var all: Int64?
    /// Tokens issued before `notBefore` are refused unless they belong to `session`; always later than `all`.
    private(set) var exceptKept: KeptCutoff?

    var count: Int { (all == nil ? 0 : 1) + (exceptKept == nil ? 0 : 1) }
    var isEmpty: Bool { count == 0 }

    mutating func add(notBefore: Int64, kept: UUID?) {
        if let kept, let current = exceptKept, current.session != kept {
            // Below the earlier of the two, one of them refuses any session.
            raiseAll(to: min(notBefore, current.notBefore))
            if notBefore > current.notBefore { exceptKept = KeptCutoff(notBefore: notBefore, session: kept) }
        } else if let kept {
            exceptKept = KeptCutoff(notBefore: max(notBefore, exceptKept?.notBefore ?? notBefore), session: kept)
        } else {
            raiseAll(to: notBefore)
        }
        if let cutoff = exceptKept, let all, cutoff.notBefore <= all {
            exceptKept = nil  // `all` already refuses everything it would
        }
    }

    func revokes(issuedAt: Int64, session: UUID?) -> Bool {
        if let all, issuedAt < all { return true }
        if let exceptKept, issuedAt < exceptKept.notBefore, session != exceptKept.session { return true }
        return false
    }

    /// Drops the cutoffs at or before `forgetBefore`: the tokens they refuse have expired.
    mutating func forget(before forgetBefore: Int64) {
        if let value = all, value <= forgetBefore { all = nil }
        if let cutoff = exceptKept, cutoff.notBefore <= forgetBefore { exceptKept = nil }
    }

    private mutating func raiseAll(to notBefore: Int64) {
        all = max(notBefore, all ?? notBefore)
    }
}
