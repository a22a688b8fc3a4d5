import CRdKafka
import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// An idempotent Kafka producer (`enable.idempotence=true`, `acks=all`) whose ``send(topic:key:value:headers:)``
/// returns once the broker acknowledged the record.
///
/// Run it as a `Service` (add it to the `ServiceGroup`): delivery reports are only served while
/// ``run()`` polls. On graceful shutdown or cancellation `run()` stops polling, flushes queued
/// records (bounded by `flushTimeout`), and fails any send still waiting with ``KafkaError/isShutdown``.
public final class KafkaProducer: Service, Sendable {
    private let handle: RdKafkaHandle
    private let context: ProducerContext
    private let flushTimeout: Duration
    private let logger: Logger
    /// For blocking calls other than the poll loop (metadata probes).
    private let blockingQueue = DispatchQueue(label: "kafka.producer.blocking")

    /// - Parameters:
    ///   - flushTimeout: How long shutdown waits for queued records to be acknowledged.
    public init(configuration: KafkaConfiguration, flushTimeout: Duration = .seconds(10), logger: Logger) throws {
        let context = ProducerContext(logger: logger)
        let properties = configuration.librdkafkaProperties(
            defaults: [
                // Small produce requests and the broker's answers would otherwise meet Nagle's
                // algorithm and the peer's delayed ACK: about 40 ms per acknowledgement on Linux.
                "socket.nagle.disable": "true",
            ],
            required: [
                "enable.idempotence": "true",
                "acks": "all",
                // send() waits for a delivery report for every record, successes included.
                "delivery.report.only.error": "false",
            ]
        )
        let conf = try Librdkafka.makeConfiguration(properties, context: context)
        rd_kafka_conf_set_dr_msg_cb(conf, deliveryReportCallback)
        rd_kafka_conf_set_error_cb(conf, producerErrorCallback)
        self.handle = try Librdkafka.makeClient(RD_KAFKA_PRODUCER, conf: conf)
        self.context = context
        self.flushTimeout = flushTimeout
        self.logger = logger
    }

    deinit {
        // run() and every send hold `self`, so nothing polls or waits on deliveries any more.
        rd_kafka_destroy(handle.pointer)
    }

    /// Sends one record and waits for the broker's acknowledgement (or a delivery error).
    ///
    /// Records with a key go to the partition chosen by hashing the key. Waiting is bounded by
    /// librdkafka's `message.timeout.ms` and by shutdown. Cancelling the caller stops the wait
    /// with `CancellationError`, but the record may still be delivered.
    /// - Throws: ``KafkaError`` (e.g. `_QUEUE_FULL`, `_MSG_TIMED_OUT`, or shutdown), `CancellationError`.
    public func send(
        topic: String,
        key: [UInt8]?,
        value: [UInt8],
        headers: [KafkaHeader] = []
    ) async throws -> (partition: Int32, offset: Int64) {
        let id = context.makeMessageID()
        let report = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: DeliveryContinuation) in
                // Producing and registering under one lock: shutdown's final sweep either sees
                // this send or makes it fail up front, so no continuation is left behind.
                context.state.withLock { state in
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                        return
                    }
                    guard state.acceptsSends else {
                        continuation.resume(throwing: KafkaError.shutdown("producer is shut down"))
                        return
                    }
                    let err = produce(id: id, topic: topic, key: key, value: value, headers: headers)
                    guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                        continuation.resume(throwing: KafkaError(err))
                        return
                    }
                    state.pendingDeliveries[id] = continuation
                }
            }
        } onCancel: {
            context.state.withLock { $0.pendingDeliveries.removeValue(forKey: id) }?
                .resume(throwing: CancellationError())
        }
        return (report.partition, report.offset)
    }

    /// Whether a broker answers a metadata request within `timeout`, for readiness checks.
    public func isConnected(timeout: Duration = .seconds(2)) async -> Bool {
        guard context.state.withLock({ $0.acceptsSends }) else { return false }
        let milliseconds = timeout.librdkafkaMilliseconds
        return await runBlocking(on: blockingQueue) { [self] in
            Librdkafka.brokersReachable(handle.pointer, timeoutMilliseconds: milliseconds)
        }
    }

    /// Polls for delivery reports on a dedicated thread until graceful shutdown or cancellation,
    /// then flushes and fails what is left.
    /// - Throws: ``KafkaError`` if librdkafka reported a fatal error (the producer is then unusable).
    public func run() async throws {
        try context.state.withLock { state in
            guard state.lifecycle == .idle else {
                throw KafkaError(RD_KAFKA_RESP_ERR__STATE, message: "KafkaProducer.run() may only be called once")
            }
            state.lifecycle = .running
        }
        logger.debug("kafka producer polling")
        await withTaskCancellationOrGracefulShutdownHandler {
            await withCheckedContinuation { (finished: CheckedContinuation<Void, Never>) in
                let thread = Thread { [self] in
                    pollUntilStopped()
                    finished.resume()
                }
                thread.name = "kafka-producer-poll"
                thread.start()
            }
        } onCancelOrGracefulShutdown: { [context] in
            context.requestStop()
        }
        logger.debug("kafka producer stopped")
        if let fatal = context.state.withLock({ $0.fatalFailure }) {
            throw fatal
        }
    }

    /// Runs on the poll thread.
    private func pollUntilStopped() {
        while !context.state.withLock({ $0.stopRequested }) {
            rd_kafka_poll(handle.pointer, 100)
        }
        context.state.withLock { $0.lifecycle = .draining }
        // Serves delivery reports while it waits.
        let flushed = rd_kafka_flush(handle.pointer, flushTimeout.librdkafkaMilliseconds)
        if flushed != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.debug("kafka producer flush incomplete", metadata: [
                "kafka.unflushed": "\(rd_kafka_outq_len(handle.pointer))",
            ])
            // Fail what is still queued or in flight now rather than after message.timeout.ms.
            rd_kafka_purge(handle.pointer, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
            rd_kafka_poll(handle.pointer, 0)
        }
        let abandoned = context.state.withLock { state in
            state.lifecycle = .finished
            defer { state.pendingDeliveries.removeAll() }
            return Array(state.pendingDeliveries.values)
        }
        for continuation in abandoned {
            continuation.resume(throwing: KafkaError.shutdown("producer shut down before delivery was confirmed"))
        }
    }

    /// Hands one record to librdkafka (non-blocking). Called with the state lock held.
    private func produce(
        id: UInt,
        topic: String,
        key: [UInt8]?,
        value: [UInt8],
        headers: [KafkaHeader]
    ) -> rd_kafka_resp_err_t {
        var rawHeaders: OpaquePointer?
        if !headers.isEmpty {
            rawHeaders = rd_kafka_headers_new(headers.count)
            for header in headers {
                if let headerValue = header.value {
                    withNonNullBytes(headerValue) { bytes, count in
                        _ = rd_kafka_header_add(rawHeaders, header.key, -1, bytes, count)
                    }
                } else {
                    _ = rd_kafka_header_add(rawHeaders, header.key, -1, nil, 0)
                }
            }
        }
        // The message id travels as the pointer's bit pattern, not as a pointer to anything.
        let opaque = UnsafeMutableRawPointer(bitPattern: id)
        let err = withNonNullBytes(value) { valueBytes, valueCount in
            withOptionalBytes(key) { keyBytes, keyCount in
                crdkafka_produce(handle.pointer, topic, keyBytes, keyCount, valueBytes, valueCount, rawHeaders, opaque)
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let rawHeaders {
            rd_kafka_headers_destroy(rawHeaders)
        }
        return err
    }
}

/// librdkafka reads a NULL pointer as a null value (a tombstone, a null header), so empty
/// arrays are passed as a valid address with length 0.
private func withNonNullBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawPointer, Int) -> R) -> R {
    guard !bytes.isEmpty else {
        return withUnsafeBytes(of: UInt8(0)) { body($0.baseAddress!, 0) }
    }
    return bytes.withUnsafeBytes { body($0.baseAddress!, $0.count) }
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let bytes else { return body(nil, 0) }
    return withNonNullBytes(bytes) { body($0, $1) }
}

struct DeliveryReport: Sendable {
    var partition: Int32
    var offset: Int64
}

typealias DeliveryContinuation = CheckedContinuation<DeliveryReport, any Error>

struct ProducerState {
    enum Lifecycle { case idle, running, draining, finished }

    var lifecycle: Lifecycle = .idle
    var stopRequested = false
    var nextMessageID: UInt = 1
    var pendingDeliveries: [UInt: DeliveryContinuation] = [:]
    var fatalFailure: KafkaError?

    /// Sends are queued before run() starts and accepted until the final sweep.
    var acceptsSends: Bool {
        switch lifecycle {
        case .idle, .running, .draining: fatalFailure == nil
        case .finished: false
        }
    }
}

/// The producer's callback context: pending deliveries keyed by message id.
final class ProducerContext: LibrdkafkaCallbackContext, @unchecked Sendable {
    let state = Mutex(ProducerState())

    func makeMessageID() -> UInt {
        state.withLock { state in
            defer { state.nextMessageID &+= 1 }
            return state.nextMessageID == 0 ? 1 : state.nextMessageID
        }
    }

    func requestStop() {
        state.withLock { $0.stopRequested = true }
    }

    /// Called on the poll thread from rd_kafka_poll/rd_kafka_flush.
    func delivered(id: UInt, result: Result<DeliveryReport, KafkaError>) {
        // A missing entry means the sender was cancelled; nothing is waiting.
        guard let continuation = state.withLock({ $0.pendingDeliveries.removeValue(forKey: id) }) else { return }
        continuation.resume(with: result.mapError { $0 })
    }

    func failed(fatal error: KafkaError) {
        state.withLock { state in
            state.fatalFailure = state.fatalFailure ?? error
            state.stopRequested = true
        }
    }
}

private let deliveryReportCallback: @convention(c) (
    OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?
) -> Void = { _, rkmessage, opaque in
    guard let rkmessage, let opaque else { return }
    guard let context = LibrdkafkaCallbackContext.from(opaque) as? ProducerContext else { return }
    let id = UInt(bitPattern: rkmessage.pointee._private)
    let raw = rkmessage.pointee
    if raw.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        context.delivered(id: id, result: .success(DeliveryReport(partition: raw.partition, offset: raw.offset)))
    } else {
        context.delivered(id: id, result: .failure(KafkaError(raw.err, message: Librdkafka.errorMessage(rkmessage))))
    }
}

/// Served from rd_kafka_poll. Most errors are transient and librdkafka retries them itself;
/// a fatal one (idempotence guarantees broken) stops the producer.
private let producerErrorCallback: @convention(c) (
    OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?
) -> Void = { rk, code, reason, opaque in
    guard let rk, let opaque else { return }
    guard let context = LibrdkafkaCallbackContext.from(opaque) as? ProducerContext else { return }
    let reasonText = reason.map { String(cString: $0) } ?? ""
    if code == RD_KAFKA_RESP_ERR__FATAL.rawValue {
        var buffer = [CChar](repeating: 0, count: 512)
        let fatalCode = rd_kafka_fatal_error(rk, &buffer, buffer.count)
        context.failed(fatal: KafkaError(fatalCode, message: String(errorBuffer: buffer)))
    } else {
        context.logger.debug("kafka producer error", metadata: [
            "kafka.error": "\(String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code))))",
            "kafka.reason": "\(reasonText)",
        ])
    }
}
