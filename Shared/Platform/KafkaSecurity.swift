import Foundation

/// How every Kafka client of a process authenticates to the brokers and encrypts the traffic:
/// plaintext for the dev broker, TLS (optionally with a client certificate, as a Strimzi `tls`
/// KafkaUser gets) or SASL SCRAM/PLAIN over TLS. Read from `KAFKA_SECURITY_PROTOCOL` and friends.
public struct KafkaSecurity: Sendable, Equatable {
    public enum SecurityProtocol: String, Sendable, CaseIterable {
        case plaintext, ssl
        case saslPlaintext = "sasl_plaintext"
        case saslSSL = "sasl_ssl"

        var usesSASL: Bool { self == .saslPlaintext || self == .saslSSL }
        var usesTLS: Bool { self == .ssl || self == .saslSSL }
    }

    public static let saslMechanisms = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

    public var securityProtocol: SecurityProtocol
    /// librdkafka properties; the SASL password is among them, so never log this.
    public var librdkafkaProperties: [String: String]

    public init(reader: ConfigReader) throws {
        let raw = reader.string("KAFKA_SECURITY_PROTOCOL", default: "plaintext").lowercased()
        guard let securityProtocol = SecurityProtocol(rawValue: raw) else {
            throw ConfigError.invalidValue(key: "KAFKA_SECURITY_PROTOCOL", expected: "one of plaintext, ssl, sasl_plaintext, sasl_ssl")
        }
        self.securityProtocol = securityProtocol
        var properties = ["security.protocol": securityProtocol.rawValue]
        if securityProtocol.usesSASL {
            let mechanism = reader.string("KAFKA_SASL_MECHANISM", default: "SCRAM-SHA-512").uppercased()
            guard Self.saslMechanisms.contains(mechanism) else {
                throw ConfigError.invalidValue(key: "KAFKA_SASL_MECHANISM", expected: "one of \(Self.saslMechanisms.joined(separator: ", "))")
            }
            properties["sasl.mechanisms"] = mechanism
            properties["sasl.username"] = try reader.required("KAFKA_SASL_USERNAME")
            properties["sasl.password"] = try reader.required("KAFKA_SASL_PASSWORD")
        }
        if securityProtocol.usesTLS {
            for (key, property) in [("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
                                    ("KAFKA_SSL_CERTIFICATE_LOCATION", "ssl.certificate.location"),
                                    ("KAFKA_SSL_KEY_LOCATION", "ssl.key.location")] {
                guard let path = reader.string(key) else { continue }
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw ConfigError.invalidValue(key: key, expected: "the path of a readable PEM file")
                }
                properties[property] = path
            }
            if (properties["ssl.certificate.location"] == nil) != (properties["ssl.key.location"] == nil) {
                throw ConfigError.invalidValue(key: "KAFKA_SSL_KEY_LOCATION",
                                               expected: "set together with KAFKA_SSL_CERTIFICATE_LOCATION (a client certificate needs its key)")
            }
        }
        self.librdkafkaProperties = properties
    }
}
