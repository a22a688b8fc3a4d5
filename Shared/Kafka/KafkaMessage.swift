import Foundation

/// A Kafka record header. Keys may repeat; a `nil` value is distinct from an empty one.
public struct KafkaHeader: Sendable, Hashable {
    public var key: String
    public var value: [UInt8]?

    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// A record read by ``KafkaConsumer``, copied out of librdkafka's buffers.
public struct KafkaMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    /// The payload; empty for an empty or null (tombstone) value.
    public var value: [UInt8]
    /// Headers in the order the producer added them.
    public var headers: [KafkaHeader]
    /// The record's timestamp (create or log-append time), when the broker reports one.
    public var timestamp: Date?

    public init(
        topic: String,
        partition: Int32,
        offset: Int64,
        key: [UInt8]?,
        value: [UInt8],
        headers: [KafkaHeader],
        timestamp: Date?
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The first header with this key, if any.
    public func header(_ key: String) -> KafkaHeader? {
        headers.first { $0.key == key }
    }
}
