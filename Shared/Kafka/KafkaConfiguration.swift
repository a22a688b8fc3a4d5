/// Connection settings shared by ``KafkaProducer`` and ``KafkaConsumer``.
///
/// `properties` are extra librdkafka settings (see librdkafka's CONFIGURATION.md), applied
/// after this wrapper's defaults. Settings the wrapper's guarantees depend on (idempotence
/// for the producer, manual offset storing for the consumer) are applied last and win.
public struct KafkaConfiguration: Sendable, Hashable {
    /// Comma-separated `host:port` list, librdkafka's `bootstrap.servers`.
    public var bootstrapServers: String
    /// librdkafka's `client.id`, shown in broker logs and metrics.
    public var clientId: String
    /// Extra librdkafka properties, for example `["statistics.interval.ms": "0"]`.
    public var properties: [String: String]

    public init(bootstrapServers: String, clientId: String, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.clientId = clientId
        self.properties = properties
    }

    /// Settings in the order librdkafka should apply them: defaults, the caller's, then the required ones.
    func librdkafkaProperties(defaults: [String: String], required: [String: String]) -> [(String, String)] {
        var merged = defaults
        merged["bootstrap.servers"] = bootstrapServers
        merged["client.id"] = clientId
        merged.merge(properties) { _, caller in caller }
        merged.merge(required) { _, required in required }
        return merged.sorted { $0.key < $1.key }
    }
}
