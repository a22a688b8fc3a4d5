import CRdKafka
import Dispatch
import Foundation
import Logging

// Internal plumbing shared by the producer, the consumer and the mock cluster.

/// A librdkafka client handle (`rd_kafka_t *`). librdkafka handles are thread-safe; the owner
/// guarantees the pointer outlives every use.
struct RdKafkaHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// The object librdkafka hands back to our C callbacks as the configuration opaque.
///
/// This is the only Swift object passed through a C pointer: the client that owns it keeps it
/// alive (strong reference) until after `rd_kafka_destroy` returned, so the callbacks use it
/// unretained. Per-message state never travels through C pointers; messages carry integer ids.
/// Unchecked because subclasses add only `let` properties of `Sendable` types.
class LibrdkafkaCallbackContext: @unchecked Sendable {
    let logger: Logger
    /// Caps forwarded librdkafka log lines at this level (the mock cluster's host handle is noisy).
    let maximumLogLevel: Logger.Level

    init(logger: Logger, maximumLogLevel: Logger.Level = .critical) {
        self.logger = logger
        self.maximumLogLevel = maximumLogLevel
    }

    var opaque: UnsafeMutableRawPointer {
        Unmanaged.passUnretained(self).toOpaque()
    }

    static func from(_ opaque: UnsafeMutableRawPointer) -> LibrdkafkaCallbackContext {
        Unmanaged<LibrdkafkaCallbackContext>.fromOpaque(opaque).takeUnretainedValue()
    }

    /// Forwards one librdkafka log line. librdkafka uses syslog levels (0 emergency ... 7 debug);
    /// its "err" lines are mostly conditions it retries itself (broker unreachable), so they
    /// arrive as warnings, and its notice/info chatter stays at debug.
    func log(level: Int32, facility: String, message: String) {
        let mapped: Logger.Level
        switch level {
        case ...2: mapped = .error
        case 3, 4: mapped = .warning
        case 5, 6: mapped = .debug
        default: mapped = .trace
        }
        logger.log(
            level: min(mapped, maximumLogLevel),
            "librdkafka log",
            metadata: ["kafka.facility": "\(facility)", "kafka.log": "\(message)"]
        )
    }
}

/// librdkafka calls this from its internal threads (we do not set `log.queue`).
private let forwardLog: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    rk, level, facility, message in
    guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
    LibrdkafkaCallbackContext.from(opaque).log(
        level: level,
        facility: facility.map { String(cString: $0) } ?? "",
        message: message.map { String(cString: $0) } ?? ""
    )
}

enum Librdkafka {
    /// Builds an `rd_kafka_conf_t` with the given properties, our log bridge and `context` as opaque.
    /// The caller owns the result until `rd_kafka_new` succeeds.
    static func makeConfiguration(
        _ properties: [(String, String)],
        context: LibrdkafkaCallbackContext
    ) throws -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError.invalidConfiguration("rd_kafka_conf_new failed")
        }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            let result = rd_kafka_conf_set(conf, name, value, &errorBuffer, errorBuffer.count)
            guard result == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                throw KafkaError.invalidConfiguration("\(name): \(String(errorBuffer: errorBuffer))")
            }
        }
        rd_kafka_conf_set_opaque(conf, context.opaque)
        rd_kafka_conf_set_log_cb(conf, forwardLog)
        return conf
    }

    /// Creates a client from `conf`, which it consumes whether or not creation succeeds.
    static func makeClient(_ type: rd_kafka_type_t, conf: OpaquePointer) throws -> RdKafkaHandle {
        var errorBuffer = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.invalidConfiguration(String(errorBuffer: errorBuffer))
        }
        return RdKafkaHandle(pointer: rk)
    }

    /// Whether a broker answers a metadata request within `timeoutMilliseconds`. Blocks the caller.
    static func brokersReachable(_ rk: OpaquePointer, timeoutMilliseconds: Int32) -> Bool {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        // all_topics = 0 with no topic: asks only for locally known topics, enough to prove a round trip.
        let err = rd_kafka_metadata(rk, 0, nil, &metadata, timeoutMilliseconds)
        defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return false }
        return metadata.pointee.broker_cnt > 0
    }

    /// The high watermark (offset of the next record to be written) of every partition of `topic`,
    /// asked of the brokers. Blocks the caller for up to about twice `timeoutMilliseconds`.
    static func endOffsets(_ rk: OpaquePointer, topic: String, timeoutMilliseconds: Int32) -> Result<[Int32: Int64], KafkaError> {
        offsetRanges(rk, topic: topic, timeoutMilliseconds: timeoutMilliseconds).map { $0.mapValues(\.upperBound) }
    }

    /// The offsets every partition of `topic` holds (low watermark ..< high watermark), asked of the
    /// brokers; empty for a partition that never held a record or whose records were all deleted.
    /// A topic the brokers do not know has no partitions. Blocks the caller for up to about twice
    /// `timeoutMilliseconds`.
    static func offsetRanges(_ rk: OpaquePointer, topic: String, timeoutMilliseconds: Int32) -> Result<[Int32: Range<Int64>], KafkaError> {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(rk, 1, nil, &metadata, timeoutMilliseconds)
        defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return .failure(KafkaError(err)) }
        var partitions: [Int32] = []
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let entry = metadata.pointee.topics[index]
            guard String(cString: entry.topic) == topic else { continue }
            if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(KafkaError(entry.err)) }
            for partition in 0..<Int(entry.partition_cnt) { partitions.append(entry.partitions[partition].id) }
        }
        var ranges: [Int32: Range<Int64>] = [:]
        for partition in partitions {
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, timeoutMilliseconds)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(KafkaError(err)) }
            ranges[partition] = min(low, high)..<high
        }
        return .success(ranges)
    }

    /// Copies a consumed record out of librdkafka's buffers. `rkmessage.err` must be NO_ERROR.
    static func message(from rkmessage: UnsafePointer<rd_kafka_message_t>) -> KafkaMessage {
        let raw = rkmessage.pointee
        let topic = raw.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        let key: [UInt8]? = raw.key.map { bytes($0, count: raw.key_len) }
        let value: [UInt8] = raw.payload.map { bytes($0, count: raw.len) } ?? []

        var headers: [KafkaHeader] = []
        var rawHeaders: OpaquePointer?
        if rd_kafka_message_headers(rkmessage, &rawHeaders) == RD_KAFKA_RESP_ERR_NO_ERROR, let rawHeaders {
            var index = 0
            var name: UnsafePointer<CChar>?
            var headerValue: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(rawHeaders, index, &name, &headerValue, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(KafkaHeader(
                    key: name.map { String(cString: $0) } ?? "",
                    value: headerValue.map { bytes($0, count: size) }
                ))
                index += 1
            }
        }

        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let milliseconds = rd_kafka_message_timestamp(rkmessage, &timestampType)
        let timestamp = milliseconds >= 0 ? Date(timeIntervalSince1970: Double(milliseconds) / 1000) : nil

        return KafkaMessage(
            topic: topic,
            partition: raw.partition,
            offset: raw.offset,
            key: key,
            value: value,
            headers: headers,
            timestamp: timestamp
        )
    }

    private static func bytes(_ pointer: UnsafeRawPointer, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// The error message of a message-shaped error event (the payload holds the text).
    static func errorMessage(_ rkmessage: UnsafePointer<rd_kafka_message_t>) -> String {
        String(cString: rd_kafka_message_errstr(rkmessage))
    }
}

extension Duration {
    /// Whole milliseconds, clamped to librdkafka's `int` timeouts.
    var librdkafkaMilliseconds: Int32 {
        let (seconds, attoseconds) = components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

/// Runs blocking librdkafka work on `queue` (a dedicated serial queue, never the cooperative pool)
/// and resumes the caller with its result.
func runBlocking<Result: Sendable>(
    on queue: DispatchQueue,
    _ work: @escaping @Sendable () -> Result
) async -> Result {
    await withCheckedContinuation { continuation in
        queue.async { continuation.resume(returning: work()) }
    }
}

extension String {
    /// Decodes a NUL-terminated C error buffer filled by librdkafka.
    init(errorBuffer: [CChar]) {
        self.init(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
