import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import Platform

/// `withTimeout` bounds what a readiness probe waits for, even an operation that never returns and
/// ignores cancellation (a statement written to a connection Postgres closed is never answered).
@Suite struct TimeoutTests {
    @Test func anAnswerInTimeIsReturned() async {
        #expect(await withTimeout(.seconds(5)) { 42 } == 42)
        #expect(await withTimeout(.seconds(5)) { () async throws -> Int in throw CancellationError() } == nil)
    }

    @Test func anOperationThatNeverReturnsDoesNotHoldTheCaller() async {
        let stuck = NIOLockedValueBox<UnsafeContinuation<Void, Never>?>(nil)
        let finished = NIOLockedValueBox(false)
        let answer = await withTimeout(.milliseconds(100)) { () async -> Int in
            // Suspended until resumed by hand, whatever cancellation says.
            await withUnsafeContinuation { continuation in stuck.withLockedValue { $0 = continuation } }
            finished.withLockedValue { $0 = true }
            return 1
        }
        // Returned at the deadline while the operation is still suspended (a task group would
        // have waited for it, that is, for ever).
        #expect(answer == nil)
        #expect(finished.withLockedValue { $0 } == false)
        // Let the abandoned operation finish, so the test leaves nothing suspended.
        while stuck.withLockedValue({ $0 }) == nil { try? await Task.sleep(for: .milliseconds(10)) }
        stuck.withLockedValue { $0?.resume(); $0 = nil }
    }
}
