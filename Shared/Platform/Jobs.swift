import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import PostgresNIO
import ServiceLifecycle

/// A kind of durable job (a timer): its name, its payload and how it is retried. Jobs live in the
/// service's `jobs` table, are scheduled inside the transaction of the change that needs them (so
/// a timer can never go missing), and run on business time.
public struct JobKind<Payload: Codable & Sendable>: Sendable {
    public let name: String
    /// Tries before the job is parked as failed (`<service> jobs list --failed`, `jobs retry ID`).
    public let maxAttempts: Int
    /// The first retry's delay; each further retry doubles it (with jitter), up to `maximumBackoff`.
    public let backoff: Duration
    public let maximumBackoff: Duration
    /// Runs in a transaction of its own rather than in a batch with other jobs (a set handler's
    /// jobs of the kind still run together, as one set): for a job that takes a lock many others
    /// need (a counter row), which a batch would hold until all of its jobs are done.
    public let runsAlone: Bool

    public init(_ name: String, maxAttempts: Int = 8, backoff: Duration = .seconds(1), maximumBackoff: Duration = .seconds(3600),
                runsAlone: Bool = false) {
        self.name = name
        self.maxAttempts = max(1, maxAttempts)
        self.backoff = backoff
        self.maximumBackoff = maximumBackoff
        self.runsAlone = runsAlone
    }
}

/// What a job handler knows about the job it runs.
public struct Job: Sendable, Equatable {
    public var id: UUID
    public var kind: String
    public var key: String
    /// When it was due, in business time.
    public var dueAt: Date
    /// Earlier tries that failed.
    public var attempts: Int
}

/// A recurring schedule for housekeeping, evaluated in UTC business time.
public enum Schedule: Sendable, Equatable {
    /// Every interval, counted from the previous run.
    case every(Duration)
    /// Once an hour at `minute`.
    case hourly(minute: Int)
    /// Once a day at `hour:minute`.
    case daily(hour: Int, minute: Int)

    /// The first time strictly after `date` the schedule fires.
    public func next(after date: Date) -> Date {
        switch self {
        case .every(let interval):
            let (seconds, attoseconds) = interval.components
            return date.addingTimeInterval(max(1, Double(seconds) + Double(attoseconds) / 1e18))
        case .hourly(let minute):
            return Self.nextBoundary(after: date, period: 3600, offset: Double(minute % 60) * 60)
        case .daily(let hour, let minute):
            return Self.nextBoundary(after: date, period: 86_400, offset: Double(hour % 24) * 3600 + Double(minute % 60) * 60)
        }
    }

    private static func nextBoundary(after date: Date, period: Double, offset: Double) -> Date {
        let time = date.timeIntervalSince1970
        var candidate = ((time - offset) / period).rounded(.down) * period + offset
        while candidate <= time { candidate += period }
        return Date(timeIntervalSince1970: candidate)
    }
}

/// The handlers of a service's job kinds and its recurring schedules.
public struct JobHandlers: Sendable {
    struct Entry: Sendable {
        var maxAttempts: Int
        var runsAlone = false
        var backoff: Duration
        var maximumBackoff: Duration
        var schedule: Schedule?
        var run: @Sendable (Job, String, Transaction) async throws -> Void
        /// For a kind registered with `onSet`: runs every job of the kind claimed in one batch at once.
        var runSet: (@Sendable ([(Job, String)], Transaction) async throws -> Void)?
    }

    var entries: [String: Entry] = [:]

    public init() {}

    /// Runs jobs of `kind`, each in a transaction that also removes the job: the handler's effect and
    /// the job's completion commit together, so a job whose effect committed never runs again. What
    /// it does outside the database (a provider call) must be idempotent (use the job id as the key).
    public mutating func on<Payload>(_ kind: JobKind<Payload>, _ handler: @escaping @Sendable (Payload, Job, Transaction) async throws -> Void) {
        entries[kind.name] = Entry(maxAttempts: kind.maxAttempts, runsAlone: kind.runsAlone, backoff: kind.backoff, maximumBackoff: kind.maximumBackoff,
                                   schedule: nil) { job, payload, transaction in
            let decoded = try EventCoding.decoder.decode(Payload.self, from: Data(payload.utf8))
            try await handler(decoded, job, transaction)
        }
    }

    /// Runs the jobs of `kind` claimed in one batch as a set, with one call of `handler`: a handler
    /// that reads and writes its jobs' rows with one statement per table (a set of renewals) costs
    /// a batch what one job costs. The set commits with its batch; if the handler throws, the batch
    /// rolls back and every job runs again alone (a set of one), its failure recorded against it.
    public mutating func onSet<Payload>(_ kind: JobKind<Payload>,
                                        _ handler: @escaping @Sendable ([(payload: Payload, job: Job)], Transaction) async throws -> Void) {
        let runSet: @Sendable ([(Job, String)], Transaction) async throws -> Void = { jobs, transaction in
            let decoded = try jobs.map { job, payload in (payload: try EventCoding.decoder.decode(Payload.self, from: Data(payload.utf8)), job: job) }
            try await handler(decoded, transaction)
        }
        entries[kind.name] = Entry(maxAttempts: kind.maxAttempts, runsAlone: kind.runsAlone, backoff: kind.backoff, maximumBackoff: kind.maximumBackoff,
                                   schedule: nil, run: { job, payload, transaction in try await runSet([(job, payload)], transaction) },
                                   runSet: runSet)
    }

    /// Runs `handler` on `schedule`, once per occurrence across every replica of the service.
    public mutating func every(_ name: String, _ schedule: Schedule, maxAttempts: Int = 3,
                               _ handler: @escaping @Sendable (Transaction) async throws -> Void) {
        entries[JobHandlers.recurringKind(name)] = Entry(maxAttempts: maxAttempts, backoff: .seconds(5), maximumBackoff: .seconds(300), schedule: schedule) { _, _, transaction in
            try await handler(transaction)
        }
    }

    public mutating func merge(_ other: JobHandlers) {
        entries.merge(other.entries) { _, new in new }
    }

    /// Does a recurring job's work now, in `transaction` (tests; the schedule is untouched).
    public func perform(recurring name: String, in transaction: Transaction) async throws {
        guard let entry = entries[JobHandlers.recurringKind(name)] else { throw JobError.unknownKind(JobHandlers.recurringKind(name)) }
        try await entry.run(Job(id: UUID(), kind: JobHandlers.recurringKind(name), key: "", dueAt: transaction.now, attempts: 0), "{}", transaction)
    }

    /// Recurring schedules are jobs of kind `recurring:<name>` with an empty key.
    static func recurringKind(_ name: String) -> String { "recurring:\(name)" }

    public var kinds: [String] { entries.keys.sorted() }
}

extension Transaction {
    /// What to do when a job of the same kind and key is already waiting.
    public enum ExistingJob: Sendable {
        /// Keep the waiting job as it is (a parked one is revived with the new due time and payload).
        case keep
        /// Replace its due time and payload.
        case replace
    }

    /// Schedules a job of `kind` for `key` at `due` (business time), committing with this transaction.
    /// A kind has at most one job per key.
    public func schedule<Payload>(_ kind: JobKind<Payload>, key: String, payload: Payload, at due: Date, ifExists: ExistingJob = .keep) async throws {
        let data = try JSONWriter.string(payload)
        let replace = ifExists == .replace
        // A runner sleeping until a later job, or until its next poll, wakes at commit: the NOTIFY
        // goes in the same statement, one round trip for both.
        let wake = due.timeIntervalSince(now) < Jobs.notifyHorizon
        try await query("""
            WITH scheduled AS (
                INSERT INTO jobs (id, kind, key, payload, due_at, traceparent)
                VALUES (\(UUID.v7()), \(kind.name), \(key), \(data)::jsonb, \(due), \(context.traceparent))
                ON CONFLICT (kind, key) DO UPDATE SET
                    -- A new id: when a running job reschedules its own key, the runner's delete of the
                    -- finished job (by its old id) must not take the rescheduled one with it.
                    id = EXCLUDED.id, payload = EXCLUDED.payload, due_at = EXCLUDED.due_at, traceparent = EXCLUDED.traceparent,
                    attempts = 0, last_error = NULL, failed_at = NULL
                WHERE \(replace) OR jobs.failed_at IS NOT NULL
                RETURNING 1)
            SELECT pg_notify('jobs_' || current_schema(), '') WHERE \(wake)
            """)
    }

    /// Schedules a set of jobs of `kind` in one statement (a set of renewals schedules its charges
    /// as cheaply as one): the same rules as `schedule` for each.
    public func schedule<Payload>(_ kind: JobKind<Payload>, _ jobs: [(key: String, payload: Payload, due: Date)],
                                  ifExists: ExistingJob = .keep) async throws {
        // One row per key (the last one given wins): a statement cannot upsert a row twice.
        var positions: [String: Int] = [:]
        var unique: [(key: String, payload: Payload, due: Date)] = []
        for job in jobs {
            if let at = positions[job.key] { unique[at] = job } else { positions[job.key] = unique.count; unique.append(job) }
        }
        let jobs = unique
        guard !jobs.isEmpty else { return }
        let ids = jobs.map { _ in UUID.v7() }
        let keys = jobs.map(\.key)
        let payloads = try jobs.map { try JSONWriter.string($0.payload) }
        let dues = jobs.map(\.due)
        let wake = dues.contains { $0.timeIntervalSince(now) < Jobs.notifyHorizon }
        try await query("""
            WITH scheduled AS (
                INSERT INTO jobs (id, kind, key, payload, due_at, traceparent)
                SELECT j.id, \(kind.name), j.key, j.payload::jsonb, j.due_at, \(context.traceparent)
                FROM unnest(\(ids)::uuid[], \(keys)::text[], \(payloads)::text[], \(dues)::timestamptz[]) AS j (id, key, payload, due_at)
                ON CONFLICT (kind, key) DO UPDATE SET
                    id = EXCLUDED.id, payload = EXCLUDED.payload, due_at = EXCLUDED.due_at, traceparent = EXCLUDED.traceparent,
                    attempts = 0, last_error = NULL, failed_at = NULL
                WHERE \(ifExists == .replace) OR jobs.failed_at IS NOT NULL
                RETURNING 1)
            SELECT pg_notify('jobs_' || current_schema(), '') WHERE \(wake)
            """)
    }

    /// Cancels the waiting jobs of `kind` for `keys`, in one statement; one being run right now
    /// is left to finish (never waited for). Returns how many were removed.
    @discardableResult
    public func cancelWaiting<Payload>(_ kind: JobKind<Payload>, keys: [String]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        // Each key looked up by (kind, key), whatever the statistics say: a kind's jobs come and go
        // faster than ANALYZE, and a plan that scans the kind's index for the keys costs a scan of
        // every job of the kind.
        let rows = try await query("""
            DELETE FROM jobs WHERE id = ANY(ARRAY(
                SELECT j.id FROM unnest(\(keys)::text[]) AS k (key)
                JOIN LATERAL (SELECT id FROM jobs WHERE kind = \(kind.name) AND key = k.key FOR UPDATE SKIP LOCKED) j ON true))
            RETURNING 1
            """)
        var removed = 0
        for try await _ in rows.decode(Int.self) { removed += 1 }
        return removed
    }

    /// Cancels the waiting job of `kind` for `key`, if any. Returns whether one was removed.
    @discardableResult
    public func cancel<Payload>(_ kind: JobKind<Payload>, key: String) async throws -> Bool {
        try await first("DELETE FROM jobs WHERE kind = \(kind.name) AND key = \(key) RETURNING 1", as: Int.self) != nil
    }
}

public enum JobError: Error, Equatable {
    case unknownKind(String)
}

public enum Jobs {
    /// Jobs due sooner than this wake sleeping runners at once (a NOTIFY at commit).
    static let notifyHorizon: TimeInterval = 2

    /// The platform's recurring housekeeping, registered by the runtime for every service: old inbox
    /// rows, sent outbox rows and expired idempotency records are dropped in small batches.
    public static func housekeeping(inboxRetention: Duration = .seconds(14 * 86_400)) -> JobHandlers {
        var handlers = JobHandlers()
        let inboxSeconds = Int(inboxRetention.components.seconds)
        handlers.every("prune-inbox", .every(.seconds(600))) { transaction in
            // Deduplication needs an event's id only while the broker may still redeliver it.
            try await transaction.query("""
                DELETE FROM inbox WHERE event_id IN (
                    SELECT event_id FROM inbox WHERE received_at < now() - \(inboxSeconds) * interval '1 second' LIMIT 5000)
                """)
        }
        handlers.every("prune-outbox", .every(.seconds(600))) { transaction in
            // Sent rows are kept a week for investigation.
            try await transaction.query("""
                DELETE FROM outbox WHERE seq IN (
                    SELECT seq FROM outbox WHERE sent_at < now() - interval '7 days' LIMIT 5000)
                """)
        }
        handlers.every("prune-idempotency-keys", .every(.seconds(600))) { transaction in
            try await transaction.query("""
                DELETE FROM idempotency_keys WHERE (caller, key) IN (
                    SELECT caller, key FROM idempotency_keys WHERE created_at < now() - \(Idempotency.retention) * interval '1 second' LIMIT 5000)
                """)
        }
        return handlers
    }
}

/// Wakes every waiting runner task at once (NOTIFY, a clock jump).
final class WakeSignal: Sendable {
    private struct State {
        var generation = 0
        var next = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// A worker was woken for a NOTIFY and has not claimed yet: its claim will see every job
        /// committed before it, so further NOTIFYs until then wake no one more.
        var wakePending = false
    }

    private let state = NIOLockedValueBox(State())

    func fire() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.generation += 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Wakes one waiting worker (the longest waiting): a NOTIFY says a job is due, and one worker
    /// claims the batch; waking every worker for each would have them all query for one job.
    /// The generation moves too, so a worker about to wait runs instead.
    func fireOne() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            guard !state.wakePending else { return nil }
            guard let oldest = state.waiters.keys.min() else {
                // No one waiting: a worker about to wait runs once more instead.
                state.generation += 1
                return nil
            }
            state.wakePending = true
            return state.waiters.removeValue(forKey: oldest)
        }
        waiter?.resume()
    }

    /// A worker is about to claim: a NOTIFY from now on may wake another.
    func claiming() {
        state.withLockedValue { $0.wakePending = false }
    }

    var generation: Int { state.withLockedValue { $0.generation } }

    /// Returns when fired after `generation` was read, after `timeout`, or when cancelled: true when fired.
    @discardableResult
    func wait(since generation: Int, timeout: Duration) async -> Bool {
        let id = state.withLockedValue { state -> Int in
            state.next += 1
            return state.next
        }
        let timedOut = NIOLockedValueBox(false)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let parked = state.withLockedValue { state -> Bool in
                    guard state.generation == generation, !Task.isCancelled else { return false }
                    state.waiters[id] = continuation
                    return true
                }
                guard parked else { return continuation.resume() }
                Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    if self?.release(id) == true { timedOut.withLockedValue { $0 = true } }
                }
            }
        } onCancel: {
            release(id)
        }
        return !timedOut.withLockedValue { $0 }
    }

    @discardableResult
    private func release(_ id: Int) -> Bool {
        guard let waiter = state.withLockedValue({ $0.waiters.removeValue(forKey: id) }) else { return false }
        waiter.resume()
        return true
    }
}

/// Runs a service's due jobs: claimed with `FOR UPDATE SKIP LOCKED` (so any number of replicas
/// share the table and no job runs twice), a batch per transaction, by a bounded number of
/// workers. A batch runs without savepoints; if one of its jobs fails, the batch rolls back and
/// each job runs again in a transaction of its own (so one job's failure never costs another its
/// work, and the common case saves two round trips per job). A failing job is retried with exponential backoff and jitter and,
/// after its kind's `maxAttempts`, parked as failed (metric, log line, `jobs list --failed`).
/// Runners sleep until the next job is due or the poll interval passes, and wake early on NOTIFY
/// (a job scheduled due soon) or when the test clock jumps.
public struct JobRunner: Service {
    let client: PostgresClient
    let handlers: JobHandlers
    let service: String
    let clock: BusinessClock
    let concurrency: Int
    let batchSize: Int
    let pollInterval: Duration
    /// How long a worker woken by a NOTIFY waits before claiming, so that the jobs scheduled in
    /// the meantime (a burst of webhooks) are claimed as one batch rather than one each.
    let gather: Duration
    let logger: Logger
    let signal = WakeSignal()
    let kinds: [String]
    let metrics: Instruments

    struct Instruments: Sendable {
        let completed: Counter
        let failures: Counter
        let parked: Counter
        let skipped: Counter
        let lateness: Metrics.Timer
        let due: Gauge
        let parkedNow: Gauge

        init(service: String) {
            completed = Counter(label: "jobs_completed_total", dimensions: [("service", service)])
            failures = Counter(label: "jobs_failures_total", dimensions: [("service", service)])
            parked = Counter(label: "jobs_parked_total", dimensions: [("service", service)])
            skipped = Counter(label: "jobs_recurring_skipped_total", dimensions: [("service", service)])
            lateness = Metrics.Timer(label: "jobs_start_lateness_seconds", dimensions: [("service", service)], preferredDisplayUnit: .seconds)
            due = Gauge(label: "jobs_due", dimensions: [("service", service)])
            parkedNow = Gauge(label: "jobs_parked", dimensions: [("service", service)])
        }
    }

    public init(client: PostgresClient, handlers: JobHandlers, service: String, clock: BusinessClock,
                concurrency: Int = 4, batchSize: Int = 20, pollInterval: Duration = .seconds(1), gather: Duration = .milliseconds(5),
                logger: Logger) {
        self.client = client
        self.handlers = handlers
        self.service = service
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.batchSize = max(1, batchSize)
        self.pollInterval = pollInterval
        self.gather = gather
        self.logger = logger
        self.kinds = handlers.kinds
        self.metrics = Instruments(service: service)
    }

    public func run() async throws {
        let signal = self.signal
        clock.onAdvance { signal.fire() }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await listenForWakeups() }
                group.addTask { await registerSchedulesUntilDone() }
                group.addTask { await sampleBacklog() }
                for worker in 0..<concurrency {
                    group.addTask { await work(worker) }
                }
                await group.waitForAll()
            }
        }
    }

    /// Makes sure each recurring schedule has its row (one per schedule across replicas).
    func registerSchedulesUntilDone() async {
        while !Task.isCancelled {
            do {
                try await registerSchedules()
                signal.fire()
                return
            } catch {
                logger.warning("recurring schedules not registered yet", metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: pollInterval)
            }
        }
    }

    func registerSchedules() async throws {
        let now = clock.now()
        for (kind, entry) in handlers.entries {
            guard let schedule = entry.schedule else { continue }
            try await Database.query(client, """
                INSERT INTO jobs (id, kind, key, payload, due_at) VALUES (\(UUID.v7()), \(kind), '', '{}'::jsonb, \(schedule.next(after: now)))
                ON CONFLICT (kind, key) DO UPDATE SET due_at = least(jobs.due_at, EXCLUDED.due_at), failed_at = NULL
                """, logger: logger) { _ in }
        }
    }

    /// `jobs_due` (waiting and due now) and `jobs_parked`, every 15 s: what an operator alerts on.
    func sampleBacklog() async {
        while !Task.isCancelled {
            do {
                try await Database.query(client, """
                    SELECT count(*) FILTER (WHERE failed_at IS NULL AND due_at <= \(clock.now())), count(*) FILTER (WHERE failed_at IS NOT NULL)
                    FROM jobs
                    """, logger: logger) { rows in
                    for try await (due, parked) in rows.decode((Int64, Int64).self) {
                        metrics.due.record(due)
                        metrics.parkedNow.record(parked)
                    }
                }
            } catch {
                logger.debug("jobs backlog sample failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(15))
        }
    }

    func listenForWakeups() async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try Database.checkOpen(connection)
                    return try await connection.listen(on: "jobs_\(service)") { notifications in
                        signal.fire()  // anything scheduled while (re)connecting
                        for try await _ in notifications { signal.fireOne() }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("jobs listener interrupted", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: pollInterval)
            }
        }
    }

    func work(_ worker: Int) async {
        while !Task.isCancelled {
            let generation = signal.generation
            do {
                signal.claiming()
                let batch = try await runNextBatch()
                if batch.claimed == batchSize {
                    // A full batch: more may be due, so another worker is woken to share it.
                    signal.fireOne()
                    continue
                }
                let wait = if let next = batch.nextDue { time(until: next) } else { try await timeUntilNextDue() }
                if wait == .zero {
                    // A partial batch, and more due already (a trickle, or jobs other workers are
                    // running): a moment's pause lets the next ones gather into one batch.
                    if gather > .zero { try? await Task.sleep(for: gather) }
                } else if await signal.wait(since: generation, timeout: wait), gather > .zero {
                    // Woken early (a NOTIFY): the same pause; the NOTIFYs that come in it wake no
                    // other worker.
                    try? await Task.sleep(for: gather)
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("job runner interrupted", metadata: ["error": "\(String(reflecting: error))"])
                await signal.wait(since: generation, timeout: pollInterval)
            }
        }
    }

    /// How long until the earliest job is due, at most the poll interval (jobs scheduled by other
    /// replicas without a NOTIFY are found by the next poll).
    func timeUntilNextDue() async throws -> Duration {
        let next: Date? = try await Database.query(client, "SELECT min(due_at) FROM jobs WHERE failed_at IS NULL AND kind = ANY(\(kinds))",
                                                   logger: logger) { rows in
            var next: Date?
            for try await due in rows.decode(Date?.self) { next = due }
            return next
        }
        return time(until: .init(next))
    }

    /// How long until `next`, at most the poll interval.
    func time(until next: NextDue) -> Duration {
        guard case .at(let next) = next else { return pollInterval }
        let seconds = next.timeIntervalSince(clock.now())
        if seconds <= 0 { return .zero }
        return min(pollInterval, .milliseconds(Int64((seconds * 1000).rounded(.up))))
    }

    struct Claimed: Sendable {
        var job: Job
        var payload: String
        var traceparent: String?
    }

    /// When the earliest waiting job is due, as the end of a batch's transaction saw it.
    enum NextDue: Equatable {
        case none
        case at(Date)

        init(_ date: Date?) { self = date.map(NextDue.at) ?? .none }
    }

    /// Claims up to a batch of due jobs and runs them in one transaction. Returns how many it claimed.
    func runBatch() async throws -> Int {
        try await runNextBatch().claimed
    }

    /// `runBatch`, and, after a partial batch, when the next job is due (read by the batch's last
    /// statement, saving the runner a round trip of its own; nil when not read).
    func runNextBatch() async throws -> (claimed: Int, nextDue: NextDue?) {
        do {
            return try await runClaimed(readingNextDue: true) { connection in
                try await connection.checkedQuery("""
                    SELECT id, kind, key, payload::text, due_at, attempts, traceparent FROM jobs
                    WHERE failed_at IS NULL AND due_at <= \(clock.now()) AND kind = ANY(\(kinds))
                    ORDER BY due_at LIMIT \(batchSize)
                    FOR UPDATE SKIP LOCKED
                    """, logger: logger)
            }
        } catch let failure as BatchFailure {
            // Nothing of the batch committed. Each of its jobs runs again in a transaction of its
            // own, where a failure is recorded against that job alone.
            for id in failure.jobs {
                _ = try await runClaimed(readingNextDue: false) { connection in
                    try await connection.checkedQuery("""
                        SELECT id, kind, key, payload::text, due_at, attempts, traceparent FROM jobs
                        WHERE id = \(id) AND failed_at IS NULL AND kind = ANY(\(kinds))
                        FOR UPDATE SKIP LOCKED
                        """, logger: logger)
                }
            }
            return (failure.jobs.count, nil)
        }
    }

    /// A job of a batch failed: the whole batch rolls back and its jobs run again one by one.
    struct BatchFailure: Error {
        var jobs: [UUID]
    }

    /// Claims with `claim` and runs what it claimed in one transaction. A batch of several jobs runs
    /// without a savepoint per job (two round trips each); if one fails, `BatchFailure` rolls the
    /// batch back for `runBatch` to run each job alone. A job alone runs in a savepoint, so its
    /// failure is recorded in the same transaction. With `readingNextDue`, a partial batch's last
    /// statement also reads when the earliest job left waiting is due.
    func runClaimed(readingNextDue: Bool, _ claim: (PostgresConnection) async throws -> PostgresRowSequence) async throws
        -> (claimed: Int, nextDue: NextDue?) {
        try await Database.transaction(client, logger: logger) { connection in
            var claimed: [Claimed] = []
            for try await (id, kind, key, payload, due, attempts, traceparent)
                in try await claim(connection).decode((UUID, String, String, String, Date, Int32, String?).self) {
                claimed.append(Claimed(job: Job(id: id, kind: kind, key: key, dueAt: due, attempts: Int(attempts)), payload: payload, traceparent: traceparent))
            }
            // A kind that runs alone runs apart from other kinds (a set handler's jobs of it together,
            // another handler's one by one); the others claimed with it are left untouched and are
            // claimed again as soon as this short transaction ends.
            let batch: [Claimed]
            if let alone = claimed.first(where: { handlers.entries[$0.job.kind]?.runsAlone == true }) {
                batch = handlers.entries[alone.job.kind]?.runSet != nil ? claimed.filter { $0.job.kind == alone.job.kind } : [alone]
            } else {
                batch = claimed
            }
            var finished: [UUID] = []
            var setsRun: Set<String> = []
            for item in batch {
                if let entry = handlers.entries[item.job.kind], entry.runSet != nil, batch.count > 1 {
                    // The kind's jobs in this batch run as one set, where its first one stands.
                    guard setsRun.insert(item.job.kind).inserted else { continue }
                    let set = batch.filter { $0.job.kind == item.job.kind }
                    try await runSet(set, entry: entry, on: connection, batch: batch)
                    finished += set.map(\.job.id)
                    continue
                }
                if try await run(item, on: connection, guarded: batch.count == 1, batch: batch) { finished.append(item.job.id) }
            }
            // The batch's finished one-off jobs go in one statement, committing with their effects.
            if readingNextDue && claimed.count < batchSize {
                // The statement's snapshot is from before its DELETE: the finished ones are left out by id.
                let rows = try await connection.checkedQuery("""
                    WITH finished AS (DELETE FROM jobs WHERE id = ANY(\(finished)))
                    SELECT min(due_at) FROM jobs WHERE failed_at IS NULL AND kind = ANY(\(kinds)) AND id <> ALL(\(finished))
                    """, logger: logger)
                var next: Date?
                for try await due in rows.decode(Date?.self) { next = due }
                return (claimed.count, NextDue(next))
            }
            if !finished.isEmpty {
                try await connection.checkedQuery("DELETE FROM jobs WHERE id = ANY(\(finished))", logger: logger)
            }
            return (claimed.count, nil)
        }
    }

    /// Runs one claimed job; true when it finished and its row is to be deleted. `guarded`: in a
    /// savepoint, its failure recorded here; otherwise a failure throws `BatchFailure` for `batch`.
    func run(_ item: Claimed, on connection: PostgresConnection, guarded: Bool = true, batch: [Claimed] = []) async throws -> Bool {
        let job = item.job
        guard let entry = handlers.entries[job.kind] else { return false }
        var logger = self.logger
        logger[metadataKey: "job.id"] = .string(job.id.uuidString.lowercased())
        logger[metadataKey: "job.kind"] = .string(job.kind)
        let trace = item.traceparent.flatMap(TraceParent.init)?.child() ?? .make()
        logger[metadataKey: "trace.id"] = .string(trace.traceId)
        let context = OperationContext(service: service, trace: trace, logger: logger, clock: clock)
        let startedAt = clock.now()
        metrics.lateness.recordNanoseconds(max(0, Int64(startedAt.timeIntervalSince(job.dueAt) * 1e9)))
        if guarded { try await connection.checkedQuery("SAVEPOINT job", logger: logger) }
        do {
            try await entry.run(job, item.payload, Transaction(connection: connection, context: context))
            if let schedule = entry.schedule {
                try await connection.checkedQuery("""
                    UPDATE jobs SET due_at = \(schedule.next(after: max(startedAt, job.dueAt))), attempts = 0, last_error = NULL
                    WHERE id = \(job.id)
                    """, logger: logger)
            }
            if guarded { try await connection.checkedQuery("RELEASE SAVEPOINT job", logger: logger) }
            metrics.completed.increment()
            logger.debug("job completed")
            return entry.schedule == nil
        } catch {
            if Task.isCancelled { throw error }
            guard guarded else {
                logger.debug("job failed in a batch; the batch runs again one job at a time", metadata: ["error": "\(String(reflecting: error))"])
                throw BatchFailure(jobs: batch.map(\.job.id))
            }
            try await connection.checkedQuery("ROLLBACK TO SAVEPOINT job", logger: logger)
            try await recordFailure(of: job, entry: entry, error: error, on: connection, logger: logger)
            return false
        }
    }

    /// Runs a set of one kind's claimed jobs (several, in a batch) with one call of its handler; a
    /// failure throws `BatchFailure` for `batch`, whose jobs then run alone.
    func runSet(_ set: [Claimed], entry: JobHandlers.Entry, on connection: PostgresConnection, batch: [Claimed]) async throws {
        guard let runSet = entry.runSet, let first = set.first else { return }
        var logger = self.logger
        logger[metadataKey: "job.kind"] = .string(first.job.kind)
        logger[metadataKey: "job.count"] = .stringConvertible(set.count)
        let trace = first.traceparent.flatMap(TraceParent.init)?.child() ?? .make()
        logger[metadataKey: "trace.id"] = .string(trace.traceId)
        let context = OperationContext(service: service, trace: trace, logger: logger, clock: clock)
        let startedAt = clock.now()
        for item in set { metrics.lateness.recordNanoseconds(max(0, Int64(startedAt.timeIntervalSince(item.job.dueAt) * 1e9))) }
        do {
            try await runSet(set.map { ($0.job, $0.payload) }, Transaction(connection: connection, context: context))
        } catch {
            if Task.isCancelled { throw error }
            logger.debug("a set of jobs failed in a batch; the batch runs again one job at a time", metadata: ["error": "\(String(reflecting: error))"])
            throw BatchFailure(jobs: batch.map(\.job.id))
        }
        metrics.completed.increment(by: set.count)
        logger.debug("set of jobs completed")
    }

    func recordFailure(of job: Job, entry: JobHandlers.Entry, error: any Error, on connection: PostgresConnection, logger: Logger) async throws {
        metrics.failures.increment()
        let attempts = job.attempts + 1
        // A database error's description hides its detail; the reflection carries SQLSTATE and message.
        let message = String(String(reflecting: error).prefix(2000))
        if attempts < entry.maxAttempts {
            let retryAt = clock.now().addingTimeInterval(Self.backoff(after: attempts, first: entry.backoff, maximum: entry.maximumBackoff))
            try await connection.checkedQuery("""
                UPDATE jobs SET attempts = \(attempts), last_error = \(message), due_at = \(retryAt) WHERE id = \(job.id)
                """, logger: logger)
            logger.warning("job failed; will retry", metadata: ["attempt": "\(attempts)", "error": "\(message)"])
        } else if let schedule = entry.schedule {
            // A recurring job is never parked: this occurrence is given up, the next one stands.
            try await connection.checkedQuery("""
                UPDATE jobs SET attempts = 0, last_error = \(message), due_at = \(schedule.next(after: clock.now())) WHERE id = \(job.id)
                """, logger: logger)
            metrics.skipped.increment()
            logger.error("recurring job failed every attempt; skipped to its next occurrence", metadata: ["error": "\(message)"])
        } else {
            try await connection.checkedQuery("""
                UPDATE jobs SET attempts = \(attempts), last_error = \(message), failed_at = now() WHERE id = \(job.id)
                """, logger: logger)
            metrics.parked.increment()
            logger.error("job failed every attempt; parked", metadata: ["attempts": "\(attempts)", "error": "\(message)"])
        }
    }

    /// `first` × 2^(attempt−1), capped at `maximum`, scaled by a random factor in 0.5–1.5.
    static func backoff(after attempt: Int, first: Duration, maximum: Duration) -> TimeInterval {
        let base = Self.seconds(first) * pow(2, Double(min(attempt - 1, 30)))
        return min(base, Self.seconds(maximum)) * Double.random(in: 0.5...1.5)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// What `<service> jobs list` prints: one job and its state.
public struct JobRecord: Sendable, Codable, Equatable {
    public var id: UUID
    public var kind: String
    public var key: String
    public var dueAt: Date
    public var attempts: Int
    public var lastError: String?
    public var failedAt: Date?
}

/// Operator access to the jobs table: listing and re-queueing parked jobs.
public struct JobsAdministration: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Waiting jobs (soonest first) or parked ones (most recent first).
    public func list(failed: Bool, limit: Int) async throws -> [JobRecord] {
        let rows = try await client.query("""
            SELECT id, kind, key, due_at, attempts, last_error, failed_at FROM jobs
            WHERE (failed_at IS NOT NULL) = \(failed)
            ORDER BY CASE WHEN \(failed) THEN failed_at END DESC, due_at
            LIMIT \(limit)
            """, logger: logger)
        var records: [JobRecord] = []
        for try await (id, kind, key, due, attempts, error, failedAt) in rows.decode((UUID, String, String, Date, Int32, String?, Date?).self) {
            records.append(JobRecord(id: id, kind: kind, key: key, dueAt: due, attempts: Int(attempts), lastError: error, failedAt: failedAt))
        }
        return records
    }

    /// Re-queues a parked job to run now, with its attempts reset. False when no parked job has that id.
    public func retry(id: UUID) async throws -> Bool {
        let rows = try await client.query("""
            UPDATE jobs SET failed_at = NULL, attempts = 0, due_at = least(due_at, now())
            WHERE id = \(id) AND failed_at IS NOT NULL RETURNING 1
            """, logger: logger)
        var found = false
        for try await _ in rows.decode(Int.self) { found = true }
        if found { try await client.query("SELECT pg_notify('jobs_' || current_schema(), '')", logger: logger) }
        return found
    }
}
