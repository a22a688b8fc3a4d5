import Foundation
import Kafka
import Logging
import Testing
@testable import Platform

@Suite struct KafkaSecurityTests {
    static let systemRoots = "/etc/ssl/certs/ca-certificates.crt"

    @Test func plaintextIsTheDefault() throws {
        let security = try KafkaSecurity(reader: ConfigReader(values: [:]))
        #expect(security.securityProtocol == .plaintext)
        #expect(security.librdkafkaProperties == ["security.protocol": "plaintext"])
    }

    @Test func scramOverTLSBecomesLibrdkafkaSettings() throws {
        let security = try KafkaSecurity(reader: ConfigReader(values: [
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "listings", "KAFKA_SASL_PASSWORD": "pw",
            "KAFKA_SSL_CA_LOCATION": Self.systemRoots,
        ]))
        #expect(security.librdkafkaProperties == [
            "security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "listings",
            "sasl.password": "pw", "ssl.ca.location": Self.systemRoots,
        ])
    }

    @Test func badSettingsAreRefusedAtStart() {
        #expect(throws: ConfigError.invalidValue(key: "KAFKA_SECURITY_PROTOCOL", expected: "one of plaintext, ssl, sasl_plaintext, sasl_ssl")) {
            try KafkaSecurity(reader: ConfigReader(values: ["KAFKA_SECURITY_PROTOCOL": "tls"]))
        }
        #expect(throws: ConfigError.missing(key: "KAFKA_SASL_PASSWORD")) {
            try KafkaSecurity(reader: ConfigReader(values: ["KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "orders"]))
        }
        #expect(throws: ConfigError.self) {
            try KafkaSecurity(reader: ConfigReader(values: ["KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "GSSAPI",
                                                            "KAFKA_SASL_USERNAME": "orders", "KAFKA_SASL_PASSWORD": "pw"]))
        }
        #expect(throws: ConfigError.invalidValue(key: "KAFKA_SSL_CA_LOCATION", expected: "the path of a readable PEM file")) {
            try KafkaSecurity(reader: ConfigReader(values: ["KAFKA_SECURITY_PROTOCOL": "ssl", "KAFKA_SSL_CA_LOCATION": "/no/such/ca.pem"]))
        }
        #expect(throws: ConfigError.self) {
            try KafkaSecurity(reader: ConfigReader(values: ["KAFKA_SECURITY_PROTOCOL": "ssl", "KAFKA_SSL_CERTIFICATE_LOCATION": Self.systemRoots]))
        }
    }

    @Test func everyServiceClientCarriesTheSecuritySettings() throws {
        let settings = try ServiceSettings(serviceName: "orders", defaultPort: 8084, reader: ConfigReader(values: [
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "orders", "KAFKA_SASL_PASSWORD": "pw",
        ]))
        let consumer = settings.kafkaSecurity.librdkafkaProperties.merging(settings.kafkaConsumerProperties) { _, new in new }
        #expect(consumer["security.protocol"] == "sasl_ssl" && consumer["session.timeout.ms"] == "6000")
    }

    /// The librdkafka on this machine was built with TLS and SASL: it accepts these settings.
    @Test(.enabled(if: FileManager.default.isReadableFile(atPath: systemRoots)))
    func librdkafkaAcceptsTheSettings() throws {
        let security = try KafkaSecurity(reader: ConfigReader(values: [
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "orders", "KAFKA_SASL_PASSWORD": "pw", "KAFKA_SSL_CA_LOCATION": Self.systemRoots,
        ]))
        // Nothing listens on port 1: the client is created (settings checked) and never connects.
        let configuration = KafkaConfiguration(bootstrapServers: "127.0.0.1:1", clientId: "security-test",
                                               properties: security.librdkafkaProperties)
        _ = try KafkaProducer(configuration: configuration, logger: Logger(label: "test"))
        let rejected = KafkaConfiguration(bootstrapServers: "127.0.0.1:1", clientId: "security-test",
                                          properties: ["security.protocol": "carrier_pigeon"])
        #expect(throws: KafkaError.self) { try KafkaProducer(configuration: rejected, logger: Logger(label: "test")) }
    }
}
