import Contracts
import Foundation
import Synchronization
import Testing
@testable import Gateway

/// A clock tests move by hand.
final class ManualClock: Sendable {
    private let current: Mutex<Date>

    init(_ start: Date) { current = Mutex(start) }

    var now: Date { current.withLock { $0 } }

    func advance(seconds: TimeInterval) {
        current.withLock { $0 += seconds }
    }
}

@Suite struct GatewayRevocationListTests {
    let start = Date(timeIntervalSince1970: 1_795_255_200)
    let user = UUID(uuidString: "0192f1a0-1111-7000-8000-000000000001")!
    let otherUser = UUID(uuidString: "0192f1a0-1111-7000-8000-000000000002")!
    let phone = UUID(uuidString: "0192f1a0-5555-7000-8000-00000000000a")!
    let laptop = UUID(uuidString: "0192f1a0-5555-7000-8000-00000000000b")!
    let tablet = UUID(uuidString: "0192f1a0-5555-7000-8000-00000000000c")!

    var t: Int64 { Int64(start.timeIntervalSince1970) }

    func list(_ clock: ManualClock) -> RevocationList {
        RevocationList(now: { clock.now })
    }

    func event(user: UUID? = nil, sessions: [UUID] = [], notBefore: Date, kept: UUID? = nil, reason: String = "logout-all") -> SessionsRevokedV1 {
        SessionsRevokedV1(userId: user ?? self.user, sessionIds: sessions, notBefore: notBefore, keptSessionId: kept, reason: reason)
    }

    func revoked(_ list: RevocationList, user: UUID? = nil, session: UUID?, iat: Int64) -> Bool {
        list.isRevoked(subject: (user ?? self.user).uuidString.lowercased(), sessionId: session?.uuidString.lowercased(), issuedAt: iat)
    }

    @Test func aSessionScopedRevocationLeavesTheUsersOtherSessionsAlone() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        let signedOut = SessionsRevokedV1(userId: user, sessionIds: [phone], notBefore: start, keptSessionId: nil, reason: "logout", scope: .sessions)
        #expect(revocations.apply(signedOut))
        #expect(revoked(revocations, session: phone, iat: t - 60))
        #expect(!revoked(revocations, session: laptop, iat: t - 60), "a token of another session issued before the logout stays good")
        #expect(revocations.entryCount == 1)
        clock.advance(seconds: Double(RevocationList.retention) + 1)
        #expect(revocations.prune() == 0)
    }

    @Test func aRevokedSessionRefusesAllItsTokensAndNoOthers() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        // A session ended alone: its notBefore is in the past, so only the session id decides.
        #expect(revocations.apply(event(sessions: [phone], notBefore: start - 600, reason: "logout")))
        #expect(revocations.revocation(subject: user.uuidString.lowercased(), sessionId: phone.uuidString.lowercased(), issuedAt: t) == .session)
        #expect(revoked(revocations, session: phone, iat: t - 300))
        #expect(revocations.isRevoked(subject: user.uuidString, sessionId: phone.uuidString.uppercased(), issuedAt: t), "UUIDs compare by value, not spelling")
        #expect(!revoked(revocations, session: laptop, iat: t))
        #expect(!revoked(revocations, session: laptop, iat: t - 300), "issued after the (old) notBefore")
        #expect(revoked(revocations, session: laptop, iat: t - 601), "issued before the notBefore")
    }

    @Test func tokensIssuedBeforeNotBeforeAreRefusedThoseAtOrAfterItAreNot() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        // notBefore has a fraction: compare iat < floor(notBefore).
        revocations.apply(event(notBefore: start + 0.7, reason: "password-reset"))
        #expect(revoked(revocations, session: phone, iat: t - 1))
        #expect(revoked(revocations, session: nil, iat: t - 899), "a token without a session is refused too")
        #expect(!revoked(revocations, session: phone, iat: t), "issued in the revocation's own second")
        #expect(!revoked(revocations, session: phone, iat: t + 5))
        #expect(revocations.revocation(subject: user.uuidString, sessionId: phone.uuidString, issuedAt: t - 1) == .issuedBeforeNotBefore)
    }

    @Test func theKeptSessionStaysSignedIn() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        revocations.apply(event(sessions: [laptop, tablet], notBefore: start, kept: phone, reason: "password-change"))
        #expect(!revoked(revocations, session: phone, iat: t - 60))
        #expect(revoked(revocations, session: laptop, iat: t - 60))
        #expect(revoked(revocations, session: laptop, iat: t + 60), "its session id is revoked whatever the token's age")
        #expect(revoked(revocations, session: nil, iat: t - 60))
    }

    @Test func aLaterRevocationWithoutKeptSessionIsNotUndoneByAnEarlierExemption() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        revocations.apply(event(notBefore: start, kept: phone, reason: "password-change"))
        revocations.apply(event(notBefore: start + 120, reason: "logout-all"))
        #expect(revoked(revocations, session: phone, iat: t + 60), "logout-all after the password change ends the kept session too")
        #expect(revoked(revocations, session: phone, iat: t - 60))
        #expect(!revoked(revocations, session: phone, iat: t + 120))
    }

    @Test func aLaterExemptionDoesNotReviveTokensAnEarlierRevocationRefused() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        revocations.apply(event(notBefore: start, reason: "suspended"))
        revocations.apply(event(notBefore: start + 120, kept: phone, reason: "password-change"))
        #expect(revoked(revocations, session: phone, iat: t - 60), "the suspension refused it with no exemption")
        #expect(!revoked(revocations, session: phone, iat: t + 60))
        #expect(revoked(revocations, session: laptop, iat: t + 60))
        // Events arriving in the other order (different partitions never do for one user, but a
        // replay may) give the same answers.
        let reversed = list(clock)
        reversed.apply(event(notBefore: start + 120, kept: phone, reason: "password-change"))
        reversed.apply(event(notBefore: start, reason: "suspended"))
        for iat in [t - 60, t + 60, t + 130] {
            for session in [phone, laptop] {
                #expect(revoked(reversed, session: session, iat: iat) == revoked(revocations, session: session, iat: iat))
            }
        }
    }

    @Test func exemptionsForDifferentSessionsEachApplyOnlyToTheirOwnNotBefore() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        revocations.apply(event(notBefore: start, kept: phone, reason: "password-change"))
        revocations.apply(event(notBefore: start + 120, kept: laptop, reason: "password-change"))
        #expect(revoked(revocations, session: phone, iat: t - 60), "before the first change neither exemption covers it")
        #expect(revoked(revocations, session: laptop, iat: t - 60))
        #expect(revoked(revocations, session: phone, iat: t + 60), "the second change kept only the laptop")
        #expect(!revoked(revocations, session: laptop, iat: t + 60))
        #expect(!revoked(revocations, session: phone, iat: t + 120))
    }

    @Test func otherUsersAreUnaffected() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        revocations.apply(event(sessions: [phone], notBefore: start, reason: "suspended"))
        #expect(!revoked(revocations, user: otherUser, session: laptop, iat: t - 60))
        #expect(!revoked(revocations, user: otherUser, session: nil, iat: t - 60))
        #expect(!revocations.isRevoked(subject: "not-a-uuid", sessionId: laptop.uuidString, issuedAt: t - 60))
    }

    @Test func entriesAreForgottenSeventeenMinutesAfterTheirNotBefore() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        revocations.apply(event(sessions: [laptop], notBefore: start, kept: phone, reason: "password-change"))
        revocations.apply(event(user: otherUser, sessions: [tablet], notBefore: start + 300, reason: "logout"))
        #expect(revocations.entryCount == 4)  // two sessions, one kept cutoff, one full cutoff

        clock.advance(seconds: 17 * 60 - 1)
        #expect(revocations.prune() == 4, "a token issued just before the notBefore may still be accepted by a skewed verifier")
        #expect(revoked(revocations, session: laptop, iat: t - 1))

        clock.advance(seconds: 1)
        #expect(revocations.prune() == 2, "the first user's entries are forgotten")
        #expect(!revoked(revocations, session: laptop, iat: t - 1))
        #expect(revoked(revocations, user: otherUser, session: tablet, iat: t))

        clock.advance(seconds: 300)
        #expect(revocations.prune() == 0)
    }

    @Test func eventsOlderThanTheRetentionAreIgnored() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        #expect(!revocations.apply(event(sessions: [phone], notBefore: start - 17 * 60, reason: "logout")))
        #expect(revocations.entryCount == 0)
        #expect(revocations.apply(event(sessions: [phone], notBefore: start - 17 * 60 + 1, reason: "logout")))
        #expect(revocations.entryCount == 2)
    }

    @Test func insertingSweepsExpiredEntries() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        for index in 0..<100 {
            revocations.apply(event(user: UUID(), sessions: [UUID()], notBefore: start + Double(index)))
        }
        #expect(revocations.entryCount == 200)
        clock.advance(seconds: 20 * 60)
        revocations.apply(event(sessions: [phone], notBefore: clock.now))
        #expect(revocations.entryCount == 2, "without any call to prune()")
    }

    @Test func oneUserNeedsAtMostTwoCutoffs() {
        let clock = ManualClock(start)
        let revocations = list(clock)
        for index in 0..<50 {
            revocations.apply(event(notBefore: start + Double(index), kept: [phone, laptop, tablet, nil][index % 4]))
        }
        #expect(revocations.entryCount <= 2)
    }

    /// The reduced form answers exactly like keeping every event: refused iff some event has
    /// iat < notBefore and sid != its kept session.
    @Test func theReducedCutoffsAnswerLikeEveryEventKept() {
        var random = SplitMix64(seed: 0x5EED)
        let sessions: [UUID?] = [nil, phone, laptop, tablet]
        for _ in 0..<500 {
            var cutoffs = UserCutoffs()
            var events: [(notBefore: Int64, kept: UUID?)] = []
            for _ in 0..<Int(random.next() % 6) {
                let notBefore = Int64(random.next() % 20)
                let kept = sessions[Int(random.next() % 4)]
                cutoffs.add(notBefore: notBefore, kept: kept)
                events.append((notBefore, kept))
                #expect(cutoffs.count <= 2)
            }
            for iat in Int64(-1)...21 {
                for session in sessions {
                    let expected = events.contains { iat < $0.notBefore && ($0.kept == nil || session != $0.kept) }
                    #expect(cutoffs.revokes(issuedAt: iat, session: session) == expected,
                            "events \(events), iat \(iat), session \(session?.uuidString ?? "none")")
                }
            }
        }
    }
}

@Suite struct GatewayRevocationCatchUpTests {
    @Test func caughtUpOnceEveryPartitionReachedItsStartingEnd() {
        var progress = CatchUp(ranges: [0: 0..<3, 1: 0..<0, 2: 5..<7])
        #expect(!progress.isComplete)
        progress.consumed(partition: 0, offset: 1)
        progress.consumed(partition: 2, offset: 6)
        #expect(!progress.isComplete)
        progress.consumed(partition: 0, offset: 2)
        #expect(progress.isComplete)
    }

    @Test func emptyOrDeletedPartitionsNeedNoReading() {
        #expect(CatchUp(ranges: [:]).isComplete, "no topic yet: nothing was ever revoked")
        #expect(CatchUp(ranges: [0: 0..<0, 1: 9..<9]).isComplete, "partition 1's records were deleted by retention")
        var progress = CatchUp(ranges: [0: 2..<4])
        progress.startsMoved([0: 3..<6])
        #expect(!progress.isComplete, "offset 3 is still there to read")
        progress.startsMoved([0: 4..<6])
        #expect(progress.isComplete, "what was there at the start is gone")
    }
}

/// A small deterministic generator (SplitMix64), so a failure reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
