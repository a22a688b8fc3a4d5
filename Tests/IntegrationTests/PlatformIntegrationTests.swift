import Contracts
import Hummingbird
import Foundation
import Logging
import NIOConcurrencyHelpers
@testable import Platform
import PostgresNIO
import Testing

/// A fresh schema with the platform's tables and `effects`, for the platform's own integration tests.
func withPlatformSchema(_ body: @Sendable (PostgresClient, String) async throws -> Void) async throws {
    try await TestInfrastructure.withPostgres { admin async throws in
        let schema = try await TestInfrastructure.makeSchema(admin)
        try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
            let set = MigrationSet(PlatformMigrations.all + [TestInfrastructure.effectsMigration])
            try await Migrator(client: client, schema: schema, migrations: set, logger: TestInfrastructure.logger).migrate()
            try await body(client, schema)
        }
    }
}

/// Durable jobs on real Postgres: scheduled with the change that needs them, run once when due on
/// business time, retried with backoff, parked, re-queued, shared by runners without double runs.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct JobIntegrationTests {
    let logger = TestInfrastructure.logger

    struct Payload: Codable, Sendable { var note: String }

    static let record = JobKind<Payload>("test.record", maxAttempts: 3, backoff: .milliseconds(40), maximumBackoff: .milliseconds(200))

    /// Handlers whose `test.record` writes an effect row per committed run; `failing` notes fail.
    static func handlers(failing: NIOLockedValueBox<Set<String>> = .init([])) -> JobHandlers {
        var handlers = JobHandlers()
        handlers.on(record) { payload, job, transaction in
            try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(job.id.uuidString), \(payload.note))")
            if failing.withLockedValue({ $0.contains(payload.note) }) { throw Problem(.internalError, "refused \(payload.note)") }
        }
        return handlers
    }

    func runner(_ client: PostgresClient, _ schema: String, _ handlers: JobHandlers, clock: BusinessClock = BusinessClock(),
                concurrency: Int = 2, batchSize: Int = 10) -> JobRunner {
        JobRunner(client: client, handlers: handlers, service: schema, clock: clock, concurrency: concurrency, batchSize: batchSize,
                  pollInterval: .milliseconds(300), logger: logger)
    }

    /// Runs `runners` while `body` runs, then stops them.
    func whileRunning(_ runners: [JobRunner], _ body: @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for runner in runners { group.addTask { try await runner.run() } }
            defer { group.cancelAll() }
            try await body()
        }
    }

    func schedule(_ client: PostgresClient, _ schema: String, note: String, key: String? = nil, in delay: TimeInterval,
                  clock: BusinessClock = BusinessClock(), ifExists: Transaction.ExistingJob = .keep) async throws {
        try await Database.transaction(client, OperationContext(service: schema, logger: logger, clock: clock)) { transaction in
            try await transaction.schedule(Self.record, key: key ?? note, payload: Payload(note: note), at: transaction.now.addingTimeInterval(delay),
                                           ifExists: ifExists)
        }
    }

    func effects(_ client: PostgresClient, _ note: String) async throws -> Int64 {
        try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects WHERE aggregate = \(note)")
    }

    @Test func aJobRunsOnceWhenItsBusinessTimeComesAndNotBefore() async throws {
        try await withPlatformSchema { client, schema async throws in
            let clock = BusinessClock()
            try await schedule(client, schema, note: "tomorrow", in: 86_400, clock: clock)
            try await whileRunning([runner(client, schema, Self.handlers(), clock: clock)]) {
                try await Task.sleep(for: .milliseconds(700))
                #expect(try await effects(client, "tomorrow") == 0, "not due yet")
                clock.set(offsetMilliseconds: 86_400_000)  // what POST /internal/test-clock does
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(5)) { try await effects(client, "tomorrow") == 1 })
                try await Task.sleep(for: .milliseconds(700))
                #expect(try await effects(client, "tomorrow") == 1, "once")
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs WHERE kind = 'test.record'") == 0, "a done job is gone")
            }
        }
    }

    @Test func aJobScheduledInATransactionThatRollsBackDoesNotExist() async throws {
        try await withPlatformSchema { client, schema async throws in
            await #expect(throws: Problem.self) {
                try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                    try await transaction.schedule(Self.record, key: "k", payload: Payload(note: "never"), at: transaction.now)
                    throw Problem(.conflict, "the change failed")
                }
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 0)
        }
    }

    @Test func oneJobPerKindAndKeyKeptOrReplacedAndCancellable() async throws {
        try await withPlatformSchema { client, schema async throws in
            try await schedule(client, schema, note: "first", key: "k", in: 3600)
            try await schedule(client, schema, note: "second", key: "k", in: 60)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs WHERE payload->>'note' = 'first'") == 1, "kept")
            try await schedule(client, schema, note: "third", key: "k", in: 60, ifExists: .replace)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs WHERE payload->>'note' = 'third'") == 1, "replaced")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 1)
            let cancelled = try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                try await transaction.cancel(Self.record, key: "k")
            }
            #expect(cancelled)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 0)
        }
    }

    /// A renewal sets the next renewal under its own key: finishing the running job must not delete it.
    @Test func aJobThatReschedulesItsOwnKeyLeavesTheNextOneWaiting() async throws {
        try await withPlatformSchema { client, schema async throws in
            var handlers = JobHandlers()
            handlers.on(Self.record) { payload, job, transaction in
                try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(job.id.uuidString), \(payload.note))")
                try await transaction.schedule(Self.record, key: job.key, payload: Payload(note: "next"),
                                               at: transaction.now.addingTimeInterval(3600), ifExists: .replace)
            }
            try await schedule(client, schema, note: "now", key: "cycle", in: 0)
            let runner = runner(client, schema, handlers)
            #expect(try await runner.runBatch() == 1)
            #expect(try await effects(client, "now") == 1)
            #expect(try await TestInfrastructure.scalar(client, """
                SELECT count(*) FROM jobs WHERE key = 'cycle' AND payload->>'note' = 'next' AND due_at > now() + interval '59 minutes'
                """) == 1, "the next occurrence waits")
        }
    }

    /// After a partial batch the runner knows when to look again from the batch's own last statement:
    /// the earliest job still waiting, not one the batch just finished.
    @Test func aPartialBatchTellsWhenTheNextJobIsDue() async throws {
        try await withPlatformSchema { client, schema async throws in
            var handlers = JobHandlers()
            handlers.on(Self.record) { payload, job, transaction in
                try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(job.id.uuidString), \(payload.note))")
            }
            try await schedule(client, schema, note: "now", key: "a", in: 0)
            try await schedule(client, schema, note: "later", key: "b", in: 600)
            let later = try await Database.query(client, "SELECT due_at FROM jobs WHERE key = 'b'", logger: TestInfrastructure.logger) { rows in
                var due: Date?
                for try await value in rows.decode(Date.self) { due = value }
                return due
            }
            let runner = runner(client, schema, handlers)
            let first = try await runner.runNextBatch()
            #expect(first.claimed == 1)
            #expect(first.nextDue == later.map(JobRunner.NextDue.at), "the finished job is left out; the waiting one is next")
            #expect(try await effects(client, "now") == 1)
            let idle = try await runner.runNextBatch()
            #expect(idle.claimed == 0 && idle.nextDue == later.map(JobRunner.NextDue.at))
            try await client.query("DELETE FROM jobs", logger: TestInfrastructure.logger)
            #expect(try await runner.runNextBatch().nextDue == JobRunner.NextDue.none, "nothing waits")
        }
    }

    static let alone = JobKind<Payload>("test.alone", runsAlone: true)

    /// A set of jobs scheduled and cancelled with one statement each, and a kind that runs in a
    /// transaction of its own while the jobs claimed with it wait for the next batch.
    @Test func setsOfJobsAreScheduledAndCancelledInOneStatementAndALoneKindRunsByItself() async throws {
        try await withPlatformSchema { client, schema async throws in
            let context = OperationContext(service: schema, logger: logger, clock: BusinessClock())
            try await Database.transaction(client, context) { tx in
                try await tx.schedule(Self.record, [(key: "a", payload: Payload(note: "first"), due: tx.now),
                                                    (key: "b", payload: Payload(note: "b"), due: tx.now),
                                                    (key: "a", payload: Payload(note: "a"), due: tx.now)])
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 2, "one job per key, the last one given")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs WHERE key = 'a' AND payload->>'note' = 'a'") == 1)
            try await Database.transaction(client, context) { tx in
                // Kept as they are unless replaced, as `schedule` does for one.
                try await tx.schedule(Self.record, [(key: "a", payload: Payload(note: "kept?"), due: tx.now)])
                try await tx.schedule(Self.record, [(key: "b", payload: Payload(note: "replaced"), due: tx.now)], ifExists: .replace)
                try await tx.schedule(Self.alone, key: "x", payload: Payload(note: "x"), at: tx.now)
                try await tx.schedule(Self.record, key: "c", payload: Payload(note: "c"), at: tx.now)
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs WHERE payload->>'note' IN ('a', 'replaced')") == 2)
            let removed = try await Database.transaction(client, context) { tx in
                try await tx.cancelWaiting(Self.record, keys: ["c", "nothing"])
            }
            #expect(removed == 1)

            // Each run notes its transaction; the lone kind's differs from every other's.
            var handlers = JobHandlers()
            for kind in [Self.record, Self.alone] {
                handlers.on(kind) { payload, _, tx in
                    try await tx.query("INSERT INTO effects (event_id, aggregate) VALUES (txid_current()::text || ':' || \(payload.note), \(payload.note))")
                }
            }
            let runner = runner(client, schema, handlers)
            // The three due jobs are claimed together; the lone one runs by itself.
            #expect(try await runner.runBatch() == 3)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 1)
            #expect(try await effects(client, "x") == 1)
            while try await runner.runBatch() > 0 {}
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 3)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(DISTINCT split_part(event_id, ':', 1)) FROM effects") == 2,
                    "the other two shared a batch")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 0, "finished jobs are deleted with their batch")
        }
    }

    static let aloneSet = JobKind<Payload>("test.alone-set", runsAlone: true)

    /// A lone kind with a set handler: its jobs claimed together run as one set, apart from the rest.
    @Test func aLoneSetKindRunsItsClaimedJobsTogetherApartFromOtherKinds() async throws {
        try await withPlatformSchema { client, schema async throws in
            let calls = NIOLockedValueBox<[[String]]>([])
            var handlers = JobHandlers()
            handlers.onSet(Self.aloneSet) { set, tx in
                calls.withLockedValue { $0.append(set.map(\.payload.note).sorted()) }
                for item in set {
                    try await tx.query("INSERT INTO effects (event_id, aggregate) VALUES (\(item.job.id.uuidString), \(item.payload.note))")
                }
            }
            handlers.on(Self.record) { payload, job, tx in
                try await tx.query("INSERT INTO effects (event_id, aggregate) VALUES (\(job.id.uuidString), \(payload.note))")
            }
            try await Database.transaction(client, TestInfrastructure.context(schema)) { tx in
                try await tx.schedule(Self.aloneSet, [(key: "p", payload: Payload(note: "p"), due: tx.now), (key: "q", payload: Payload(note: "q"), due: tx.now)])
                try await tx.schedule(Self.record, key: "r", payload: Payload(note: "r"), at: tx.now)
            }
            let runner = runner(client, schema, handlers)
            #expect(try await runner.runBatch() == 3)
            #expect(calls.withLockedValue { $0 } == [["p", "q"]])
            #expect(try await effects(client, "r") == 0, "the other kind waits for the next batch")
            #expect(try await runner.runBatch() == 1)
            #expect(try await effects(client, "r") == 1)
        }
    }

    /// A batch runs without savepoints: when one of its jobs fails, nothing of the batch commits
    /// and each job runs again alone. The others' effects commit once; the failing one is retried.
    @Test func oneFailingJobInABatchCostsTheOthersNothing() async throws {
        try await withPlatformSchema { client, schema async throws in
            let failing = NIOLockedValueBox<Set<String>>(["bad"])
            let runs = NIOLockedValueBox<[String: Int]>([:])
            var handlers = JobHandlers()
            handlers.on(Self.record) { payload, job, transaction in
                runs.withLockedValue { $0[payload.note, default: 0] += 1 }
                try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(job.id.uuidString), \(payload.note))")
                if failing.withLockedValue({ $0.contains(payload.note) }) { throw Problem(.internalError, "refused \(payload.note)") }
            }
            for note in ["one", "bad", "two"] { try await schedule(client, schema, note: note, in: 0) }
            let runner = runner(client, schema, handlers)
            #expect(try await runner.runBatch() == 3)
            #expect(try await effects(client, "one") == 1, "committed once, by its run alone")
            #expect(try await effects(client, "two") == 1)
            #expect(try await effects(client, "bad") == 0)
            #expect(runs.withLockedValue { $0 } == ["one": 2, "bad": 2, "two": 1],
                    "the batch stopped at the failure and rolled back, then each ran alone")
            #expect(try await TestInfrastructure.scalar(client, "SELECT attempts FROM jobs WHERE key = 'bad' AND last_error LIKE '%refused bad%'") == 1,
                    "the failure is recorded against the failing job only")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 1)
        }
    }

    static let tally = JobKind<Payload>("test.tally", maxAttempts: 3, backoff: .milliseconds(40), maximumBackoff: .milliseconds(200))

    @Test func aSetHandlerRunsABatchsJobsOfItsKindInOneCallAndFallsBackToOneAtATime() async throws {
        try await withPlatformSchema { client, schema async throws in
            let failing = NIOLockedValueBox<Set<String>>([])
            let calls = NIOLockedValueBox<[[String]]>([])
            var handlers = JobHandlers()
            handlers.onSet(Self.tally) { set, transaction in
                let notes = set.map(\.payload.note)
                calls.withLockedValue { $0.append(notes.sorted()) }
                // One statement for the whole set.
                try await transaction.query("""
                    INSERT INTO effects (event_id, aggregate) SELECT * FROM unnest(\(set.map(\.job.id.uuidString))::text[], \(notes)::text[])
                    """)
                if let bad = notes.first(where: { failing.withLockedValue { $0 }.contains($0) }) { throw Problem(.internalError, "refused \(bad)") }
            }
            handlers.on(Self.record) { payload, job, transaction in
                try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(job.id.uuidString), \(payload.note))")
            }
            try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                for note in ["a", "b", "c"] {
                    try await transaction.schedule(Self.tally, key: note, payload: Payload(note: note), at: transaction.now)
                }
                try await transaction.schedule(Self.record, key: "single", payload: Payload(note: "single"), at: transaction.now)
            }
            let runner = runner(client, schema, handlers)
            #expect(try await runner.runBatch() == 4)
            #expect(calls.withLockedValue { $0 } == [["a", "b", "c"]], "the batch's three tally jobs: one call")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 4)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 0, "the set's jobs finished with it")

            // A set that fails: the batch rolls back and each of its jobs runs alone, as a set of one.
            calls.withLockedValue { $0 = [] }
            failing.withLockedValue { $0 = ["y"] }
            try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                for note in ["x", "y", "z"] {
                    try await transaction.schedule(Self.tally, key: note, payload: Payload(note: note), at: transaction.now)
                }
            }
            #expect(try await runner.runBatch() == 3)
            #expect(calls.withLockedValue { $0 } == [["x", "y", "z"], ["x"], ["y"], ["z"]])
            #expect(try await effects(client, "x") == 1, "the others committed once, alone")
            #expect(try await effects(client, "z") == 1)
            #expect(try await effects(client, "y") == 0)
            #expect(try await TestInfrastructure.scalar(client, "SELECT attempts FROM jobs WHERE key = 'y' AND last_error LIKE '%refused y%'") == 1,
                    "the failure is recorded against its job only")
        }
    }

    @Test func aFailingJobIsRetriedWithBackoffThenParkedAndAnOperatorRequeuesIt() async throws {
        try await withPlatformSchema { client, schema async throws in
            let failing = NIOLockedValueBox<Set<String>>(["flaky"])
            try await schedule(client, schema, note: "flaky", in: 0)
            let administration = JobsAdministration(client: client, logger: logger)
            try await whileRunning([runner(client, schema, Self.handlers(failing: failing))]) {
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(10)) { try await administration.list(failed: true, limit: 10).count == 1 })
                let parked = try #require(try await administration.list(failed: true, limit: 10).first)
                #expect(parked.attempts == 3 && parked.lastError?.contains("refused flaky") == true && parked.kind == "test.record")
                #expect(try await effects(client, "flaky") == 0, "each failed run rolled its effect back")
                #expect(try await administration.list(failed: false, limit: 10).isEmpty)
                failing.withLockedValue { $0 = [] }
                #expect(try await administration.retry(id: parked.id))
                #expect(try await !administration.retry(id: parked.id), "no longer parked")
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(5)) { try await effects(client, "flaky") == 1 })
            }
        }
    }

    @Test func retriesBackOffExponentiallyWithJitterUpToTheCap() {
        for attempt in 1...12 {
            let delay = JobRunner.backoff(after: attempt, first: .seconds(1), maximum: .seconds(60))
            let base = min(pow(2, Double(attempt - 1)), 60)
            #expect(delay >= base * 0.5 && delay <= base * 1.5, "attempt \(attempt): \(delay)")
        }
    }

    @Test func twoRunnersOnOneTableNeverRunAJobTwice() async throws {
        try await withPlatformSchema { client, schema async throws in
            try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                for index in 0..<1_000 {
                    try await transaction.schedule(Self.record, key: "\(index)", payload: Payload(note: "bulk"), at: transaction.now)
                }
            }
            let handlers = Self.handlers()
            try await whileRunning([runner(client, schema, handlers, concurrency: 3, batchSize: 7), runner(client, schema, handlers, concurrency: 3, batchSize: 7)]) {
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(60)) { try await effects(client, "bulk") >= 1_000 })
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(try await effects(client, "bulk") == 1_000)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(DISTINCT event_id) FROM effects") == 1_000)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs") == 0)
        }
    }

    @Test func aRecurringScheduleRunsOncePerOccurrenceAcrossRunners() async throws {
        try await withPlatformSchema { client, schema async throws in
            let runs = NIOLockedValueBox(0)
            var handlers = JobHandlers()
            handlers.every("tick", .every(.seconds(3600))) { _ in runs.withLockedValue { $0 += 1 } }
            let clock = BusinessClock()
            try await whileRunning([runner(client, schema, handlers, clock: clock), runner(client, schema, handlers, clock: clock)]) {
                #expect(try await TestInfrastructure.eventually(timeout: .seconds(5)) {
                    try await TestInfrastructure.scalar(client, "SELECT count(*) FROM jobs WHERE kind = 'recurring:tick'") == 1
                })
                try await Task.sleep(for: .milliseconds(500))
                #expect(runs.withLockedValue { $0 } == 0, "the first occurrence is an hour away")
                for hour in 1...3 {
                    clock.set(offsetMilliseconds: Int64(hour) * 3_600_000 + 1_000)
                    #expect(try await TestInfrastructure.eventually(timeout: .seconds(5)) { runs.withLockedValue { $0 } == hour })
                }
                try await Task.sleep(for: .milliseconds(700))
                #expect(runs.withLockedValue { $0 } == 3, "one run per occurrence, however many runners")
            }
        }
    }

    @Test func schedulesFallOnTheirBoundaries() {
        let date = Date(timeIntervalSince1970: 1_795_255_200 + 1_234)  // 2026-11-21T10:20:34Z
        #expect(Schedule.every(.seconds(600)).next(after: date) == date.addingTimeInterval(600))
        #expect(Schedule.hourly(minute: 15).next(after: date) == Date(timeIntervalSince1970: 1_795_255_200 + 3_600 + 900))
        #expect(Schedule.hourly(minute: 30).next(after: date) == Date(timeIntervalSince1970: 1_795_255_200 + 1_800))
        #expect(Schedule.daily(hour: 3, minute: 0).next(after: date) == Date(timeIntervalSince1970: 1_795_305_600 + 3 * 3_600))
        #expect(Schedule.daily(hour: 10, minute: 20).next(after: Date(timeIntervalSince1970: 1_795_255_200 + 1_200))
                == Date(timeIntervalSince1970: 1_795_255_200 + 1_200 + 86_400), "strictly after")
    }
}

/// `Idempotency-Key` on real Postgres: one effect per key however many arrive at once.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct IdempotencyIntegrationTests {
    let logger = TestInfrastructure.logger
    struct Created: Codable { var id: String; var amount: Int }

    func create(_ client: PostgresClient, _ schema: String, caller: UUID, key: String, amount: Int, hold: Duration = .zero) async throws -> Response {
        let fingerprint = try Idempotency.fingerprint(method: .post, path: "/v1/things", body: .object(["amount": .number(Double(amount))]))
        return try await Idempotency.run(caller: caller, key: key, fingerprint: fingerprint, client: client, context: TestInfrastructure.context(schema)) { transaction in
            let id = UUID.v7().uuidString.lowercased()
            try await transaction.query("INSERT INTO effects (event_id, aggregate, sequence) VALUES (\(id), \(key), \(amount))")
            if hold > .zero { try await Task.sleep(for: hold) }
            return try StoredResponse.json(Created(id: id, amount: amount), status: .created, headers: ["Location": "/v1/things/\(id)"])
        }
    }

    @Test func fiftyConcurrentRepeatsHaveOneEffectAndTheRestReplayOrAreToldItIsInUse() async throws {
        try await withPlatformSchema { client, schema async throws in
            let caller = UUID.v7()
            let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        do {
                            let response = try await create(client, schema, caller: caller, key: "order-1", amount: 5, hold: .milliseconds(30))
                            return response.headers[.idempotentReplayed] == "true" ? "replayed" : "first"
                        } catch let problem as Problem where problem.typeSlug == "idempotency-key-in-use" {
                            return "in-use"
                        }
                    }
                }
                var outcomes: [String] = []
                for try await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            #expect(outcomes.filter { $0 == "first" }.count == 1, "\(outcomes)")
            #expect(outcomes.count == 50)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 1)
        }
    }

    @Test func aRepeatReplaysTheFirstAnswerAndAnotherBodyIs422() async throws {
        try await withPlatformSchema { client, schema async throws in
            let caller = UUID.v7()
            let first = try await create(client, schema, caller: caller, key: "k", amount: 5)
            let again = try await create(client, schema, caller: caller, key: "k", amount: 5)
            #expect(first.status == .created && again.status == .created)
            #expect(first.headers[.idempotentReplayed] == nil && again.headers[.idempotentReplayed] == "true")
            #expect(first.headers[.location] == again.headers[.location] && first.headers[.location] != nil)
            await #expect(throws: Problem.self) { _ = try await create(client, schema, caller: caller, key: "k", amount: 6) }
            do {
                _ = try await create(client, schema, caller: caller, key: "k", amount: 6)
            } catch let problem as Problem {
                #expect(problem.status == .unprocessableContent && problem.typeSlug == "idempotency-key-reused")
            }
            // Another caller's key of the same name is theirs.
            _ = try await create(client, schema, caller: UUID.v7(), key: "k", amount: 6)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 2)
        }
    }

    @Test func aFailedEffectStoresNothingSoARetryRunsIt() async throws {
        try await withPlatformSchema { client, schema async throws in
            let caller = UUID.v7()
            let fingerprint = try Idempotency.fingerprint(method: .post, path: "/v1/things", body: nil)
            await #expect(throws: Problem.self) {
                _ = try await Idempotency.run(caller: caller, key: "k", fingerprint: fingerprint, client: client, context: TestInfrastructure.context(schema)) { transaction in
                    try await transaction.query("INSERT INTO effects (event_id) VALUES ('half-done')")
                    throw Problem(.conflict, "insufficient stock")
                }
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 0, "the effect rolled back with it")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM idempotency_keys") == 0)
            _ = try await create(client, schema, caller: caller, key: "k", amount: 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 1)
        }
    }

    @Test func aKeyOlderThanADayIsANewRequest() async throws {
        try await withPlatformSchema { client, schema async throws in
            let caller = UUID.v7()
            _ = try await create(client, schema, caller: caller, key: "k", amount: 1)
            try await client.query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'", logger: logger)
            let later = try await create(client, schema, caller: caller, key: "k", amount: 2)
            #expect(later.headers[.idempotentReplayed] == nil)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects") == 2)
            try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                try await Jobs.housekeeping().perform(recurring: "prune-idempotency-keys", in: transaction)
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM idempotency_keys") == 1, "the fresh record stays")
        }
    }

    @Test func housekeepingDropsOnlyWhatHasAgedOut() async throws {
        try await withPlatformSchema { client, schema async throws in
            try await client.query("""
                INSERT INTO inbox (event_id, type, source, topic, received_at) VALUES
                    ('old', 't', 's', 'x', now() - interval '15 days'), ('recent', 't', 's', 'x', now() - interval '13 days')
                """, logger: logger)
            try await client.query("""
                INSERT INTO outbox (event_id, topic, key, type, source, time, data, sent_at) VALUES
                    (gen_random_uuid(), 'x', 'k', 't', 's', now(), '', now() - interval '8 days'),
                    (gen_random_uuid(), 'x', 'k', 't', 's', now(), '', now() - interval '6 days'),
                    (gen_random_uuid(), 'x', 'k', 't', 's', now(), '', NULL)
                """, logger: logger)
            let housekeeping = Jobs.housekeeping()
            #expect(housekeeping.kinds == ["recurring:prune-idempotency-keys", "recurring:prune-inbox", "recurring:prune-outbox"])
            try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                for kind in housekeeping.kinds {
                    try await housekeeping.perform(recurring: String(kind.dropFirst("recurring:".count)), in: transaction)
                }
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM inbox WHERE event_id = 'recent'") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM inbox") == 1, "the event past retention is forgotten")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox") == 2, "the week-old sent row goes; the recent and the unsent stay")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1)
        }
    }
}

/// The inbox, retries and the users projection's move, on real Postgres.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct PlatformTransactionTests {
    let logger = TestInfrastructure.logger

    @Test func severalHandlersOfOneTypeAllRunInOrderInOneTransaction() async throws {
        try await withPlatformSchema { client, schema async throws in
            let failSecond = NIOLockedValueBox(false)
            var handlers = EventHandlers()
            handlers.on("marketplace.tests.thing.v1") { event, transaction in
                try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(event.id), 'projection')")
            }
            handlers.on("marketplace.tests.thing.v1") { event, transaction in
                try await transaction.query("INSERT INTO effects (event_id, aggregate) VALUES (\(event.id), 'reaction')")
                if failSecond.withLockedValue({ $0 }) { throw Problem(.internalError, "reaction failed") }
            }
            let inbox = TestInfrastructure.inbox(client, handlers: handlers, service: schema)
            let first = CloudEvent(type: "marketplace.tests.thing.v1", source: "/tests", data: Array("{}".utf8))
            #expect(try await inbox.apply(first, topic: "t", logger: logger) == .applied)
            let rows = try await client.query("SELECT aggregate FROM effects ORDER BY id", logger: logger)
            var order: [String] = []
            for try await aggregate in rows.decode(String.self) { order.append(aggregate) }
            #expect(order == ["projection", "reaction"], "both ran, in registration order")

            failSecond.withLockedValue { $0 = true }
            let second = CloudEvent(type: "marketplace.tests.thing.v1", source: "/tests", data: Array("{}".utf8))
            await #expect(throws: Problem.self) { try await inbox.apply(second, topic: "t", logger: logger) }
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM effects WHERE event_id = \(second.id)") == 0,
                    "the first handler's effect rolled back with the second's failure")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM inbox WHERE event_id = \(second.id)") == 0,
                    "and the event is not marked seen, so it is delivered again")
        }
    }

    /// The users projection takes a run of registrations in one statement: within the run the
    /// newest fact per user wins, a repeated event id counts once, and events of other types
    /// between the runs keep their place.
    @Test func runsOfEventsGoToBatchHandlersTogetherInOrder() async throws {
        try await withPlatformSchema { client, schema async throws in
            try await Migrator(client: client, schema: schema, migrations: MigrationSet(PlatformMigrations.all + UsersProjection.migrations), logger: logger).migrate()
            let calls = NIOLockedValueBox<[Int]>([])
            var handlers = EventHandlers()
            UsersProjection.register(into: &handlers)
            handlers.onBatch(UserEvents.registered) { events, _ in calls.withLockedValue { $0.append(events.count) } }
            let inbox = TestInfrastructure.inbox(client, handlers: handlers, service: schema)
            let (ann, bob) = (UUID.v7(), UUID.v7())
            let t0 = Date(timeIntervalSince1970: 1_795_255_200)
            func registered(_ user: UUID, _ name: String, at offset: TimeInterval) throws -> (event: CloudEvent, topic: String) {
                let payload = UserRegisteredV1(userId: user, displayName: name, roles: ["buyer"], status: "active", registeredAt: t0)
                return (try CloudEvent.json(type: UserEvents.registered.type, source: "/marketplace/identity", subject: nil, payload: payload,
                                            time: t0.addingTimeInterval(offset)), UserEvents.registered.topic)
            }
            let late = try registered(ann, "Ann (newer)", at: 2)
            let roles = try CloudEvent.json(type: UserEvents.roleChanged.type, source: "/marketplace/identity", subject: nil,
                                            payload: UserRoleChangedV1(userId: bob, roles: ["buyer", "vendor"], changedAt: t0), time: t0.addingTimeInterval(5))
            let batch = [late, try registered(ann, "Ann (older)", at: 1), try registered(bob, "Bob", at: 1), late,
                         (roles, UserEvents.roleChanged.topic), try registered(UUID.v7(), "Cy", at: 1)]
            let outcomes = try await inbox.apply(batch, logger: logger)
            #expect(outcomes == [.applied, .applied, .applied, .duplicate, .applied, .applied])
            #expect(calls.withLockedValue { $0 } == [3, 1], "two runs of registrations around the role change")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM users WHERE display_name = 'Ann (newer)'") == 1)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM users WHERE id = \(bob) AND roles = ARRAY['buyer','vendor']") == 1,
                    "the role change came after Bob's registration in the batch, and so applied after it")
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM users") == 3)
            #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM inbox") == 5)
        }
    }

    @Test func serializationFailuresAreRunAgain() async throws {
        try await withPlatformSchema { client, schema async throws in
            try await client.query("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)", logger: logger)
            try await client.query("INSERT INTO counters VALUES (1, 0)", logger: logger)
            let attempts = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await Database.transaction(client, TestInfrastructure.context(schema), attempts: 20) { transaction in
                            attempts.withLockedValue { $0 += 1 }
                            try await transaction.query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                            let value = try await transaction.first("SELECT value FROM counters WHERE id = 1", as: Int.self) ?? 0
                            try await Task.sleep(for: .milliseconds(20))
                            try await transaction.query("UPDATE counters SET value = \(value + 1) WHERE id = 1")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT value FROM counters WHERE id = 1") == 8, "no increment lost")
            #expect(attempts.withLockedValue { $0 } > 8, "some transactions lost a conflict and ran again")
        }
    }

    @Test func aDeadlockVictimIsRunAgainAndBothSucceed() async throws {
        try await withPlatformSchema { client, schema async throws in
            try await client.query("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)", logger: logger)
            try await client.query("INSERT INTO counters VALUES (1, 0), (2, 0)", logger: logger)
            let attempts = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (first, second) in [(1, 2), (2, 1)] {
                    group.addTask {
                        try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                            attempts.withLockedValue { $0 += 1 }
                            try await transaction.query("UPDATE counters SET value = value + 1 WHERE id = \(first)")
                            try await Task.sleep(for: .milliseconds(200))
                            try await transaction.query("UPDATE counters SET value = value + 1 WHERE id = \(second)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await TestInfrastructure.scalar(client, "SELECT sum(value) FROM counters") == 4)
            #expect(attempts.withLockedValue { $0 } == 3, "the deadlock's victim ran once more")
        }
    }

    @Test func otherDatabaseErrorsAreNotRetriedAndMapToProblemsInOnePlace() async throws {
        try await withPlatformSchema { client, schema async throws in
            let attempts = NIOLockedValueBox(0)
            do {
                try await Database.transaction(client, TestInfrastructure.context(schema)) { transaction in
                    attempts.withLockedValue { $0 += 1 }
                    try await transaction.query("INSERT INTO effects (id, event_id) VALUES (1, 'a'), (1, 'b')")
                }
                Issue.record("a duplicate key was accepted")
            } catch {
                #expect(SQLState(of: error) == .uniqueViolation)
                #expect(ProblemMiddleware<AppRequestContext>.problem(for: error, logger: logger).status == .conflict)
            }
            #expect(attempts.withLockedValue { $0 } == 1)
        }
    }

    /// A service database made before the platform owned the users table (its first migration
    /// created it, rows and all) takes the platform's migration without losing a row; a fresh
    /// one gets the table from the platform.
    @Test func theUsersProjectionMoveKeepsExistingRows() async throws {
        let oldFirstMigration = Migration(id: "0001_users_and_things", sql: """
            CREATE TABLE users (id uuid PRIMARY KEY, display_name text NOT NULL, roles text[] NOT NULL, status text NOT NULL, updated_at timestamptz NOT NULL);
            CREATE TABLE things (id int PRIMARY KEY);
            """)
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                // Yesterday's build: the platform's first tables and the service's own first file.
                try await Migrator(client: client, schema: schema, migrations: MigrationSet([PlatformMigrations.all[0], oldFirstMigration]), logger: logger).migrate()
                let user = UUID.v7()
                try await client.query("INSERT INTO users VALUES (\(user), 'Ann', ARRAY['vendor'], 'active', now())", logger: logger)
                // Today's build: the same files, the platform's new tables, and the projection's own migration.
                let today = MigrationSet(PlatformMigrations.all + [oldFirstMigration] + UsersProjection.migrations)
                let applied = try await Migrator(client: client, schema: schema, migrations: today, logger: logger).migrate()
                #expect(applied == ["platform_0002_jobs_idempotency_clock", "users_projection_0001_table"])
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM users WHERE display_name = 'Ann'") == 1)
                // The platform's handlers keep working on the adopted table.
                var handlers = EventHandlers()
                UsersProjection.register(into: &handlers)
                let event = try CloudEvent.json(type: UserEvents.roleChanged.type, source: "/marketplace/identity", subject: nil,
                                                payload: UserRoleChangedV1(userId: user, roles: ["vendor", "buyer"], changedAt: Date()))
                _ = try await TestInfrastructure.inbox(client, handlers: handlers, service: schema).apply(event, topic: UserEvents.roleChanged.topic, logger: logger)
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM users WHERE roles = ARRAY['vendor', 'buyer']") == 1)
            }
        }
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                try await Migrator(client: client, schema: schema, migrations: MigrationSet(PlatformMigrations.all + UsersProjection.migrations), logger: logger).migrate()
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM information_schema.tables WHERE table_schema = \(schema) AND table_name = 'users'") == 1)
            }
        }
    }
}
