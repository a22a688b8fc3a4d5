import CRdKafka

/// An error reported by librdkafka or by this wrapper: librdkafka's error code and a message.
public struct KafkaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative codes are client-side, positive ones come from the broker).
    public let code: Int32
    /// Human-readable detail, for logs; never contains message payloads.
    public let message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    init(_ code: rd_kafka_resp_err_t, message: String? = nil) {
        self.code = code.rawValue
        self.message = message ?? String(cString: rd_kafka_err2str(code))
    }

    /// librdkafka's symbolic name for the code, e.g. `_MSG_TIMED_OUT` or `UNKNOWN_TOPIC_OR_PART`.
    public var name: String {
        String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code)))
    }

    public var description: String {
        "KafkaError(\(name), code: \(code), message: \(message))"
    }

    /// The client was shut down (or is shutting down) before the operation could complete.
    public var isShutdown: Bool {
        code == RD_KAFKA_RESP_ERR__DESTROY.rawValue
    }

    static func shutdown(_ message: String) -> KafkaError {
        KafkaError(RD_KAFKA_RESP_ERR__DESTROY, message: message)
    }

    static func invalidConfiguration(_ message: String) -> KafkaError {
        KafkaError(RD_KAFKA_RESP_ERR__INVALID_ARG, message: message)
    }
}
