import Foundation
import Testing
@testable import Platform

@Suite struct ConfigTests {
    @Test func environmentWinsOverFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID()).env").path
        try "# comment\nHTTP_PORT=9000\nLOG_LEVEL = 'debug'\n\nJWT_AUDIENCE=\"file-aud\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reader = try ConfigReader(environment: ["CONFIG_FILE": path, "HTTP_PORT": "9100"])
        #expect(try reader.int("HTTP_PORT", default: 1) == 9100)
        #expect(reader.string("LOG_LEVEL") == "debug")
        #expect(reader.string("JWT_AUDIENCE") == "file-aud")
        #expect(reader.string("MISSING", default: "fallback") == "fallback")
    }

    @Test func malformedFileLineIsReportedWithItsNumber() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID()).env").path
        try "A=1\nthis is not a pair\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: ConfigError.malformedLine(path: path, line: 2)) { try ConfigReader(environment: ["CONFIG_FILE": path]) }
    }

    @Test func unreadableFileIsAnError() {
        #expect(throws: ConfigError.unreadableFile(path: "/nonexistent/x.env")) {
            try ConfigReader(environment: ["CONFIG_FILE": "/nonexistent/x.env"])
        }
    }

    @Test func integersAreValidatedWithTheirRange() {
        let reader = ConfigReader(values: ["HTTP_PORT": "eighty", "POOL": "0"])
        #expect(throws: ConfigError.invalidValue(key: "HTTP_PORT", expected: "an integer")) { try reader.int("HTTP_PORT", default: 1) }
        #expect(throws: ConfigError.invalidValue(key: "POOL", expected: "an integer in 1...10")) { try reader.int("POOL", default: 1, range: 1...10) }
    }

    @Test func serviceSettingsDefaultsAreTheDocumentedOnes() throws {
        let settings = try ServiceSettings(serviceName: "orders", defaultPort: 8084, reader: ConfigReader(values: [:]))
        #expect(settings.httpHost == "127.0.0.1")
        #expect(settings.httpPort == 8084)
        #expect(settings.database?.username == "orders")
        #expect(settings.database?.database == "marketplace")
        #expect(settings.database?.poolSize == 10)
        #expect(settings.kafkaBootstrapServers == "127.0.0.1:9092")
        #expect(settings.tokenIssuer == "marketplace-identity")
        #expect(settings.tokenAudience == "marketplace")
    }

    @Test func databaseURLIsParsedAndItsPasswordNeverPrinted() throws {
        let settings = try DatabaseSettings(url: "postgres://list%40ings:s3cr%2Ft@db.internal:6543/shop?sslmode=require")
        #expect(settings.username == "list@ings")
        #expect(settings.password == "s3cr/t")
        #expect(settings.host == "db.internal")
        #expect(settings.port == 6543)
        #expect(settings.database == "shop")
        #expect(settings.requireTLS)
        #expect(!settings.description.contains("s3cr"))
        #expect(throws: ConfigError.self) { try DatabaseSettings(url: "mysql://x@y/z") }
    }

    @Test func aPrivateCertificateAuthorityComesFromSslRootCert() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID()).pem")
        try "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let settings = try DatabaseSettings(url: "postgres://orders:pw@db:5432/marketplace?sslrootcert=\(file.path)")
        #expect(settings.certificateAuthorityFile == file.path)
        #expect(settings.requireTLS)
        #expect(try DatabaseSettings(url: "postgres://orders:pw@db/marketplace").certificateAuthorityFile == nil)
        #expect(throws: ConfigError.invalidValue(key: "DATABASE_URL", expected: "a URL whose sslrootcert names a readable PEM file")) {
            try DatabaseSettings(url: "postgres://orders:pw@db/marketplace?sslmode=verify-full&sslrootcert=/no/such/ca.pem")
        }
    }

    @Test func secretKeysAreRecognised() {
        #expect(ConfigReader.isSecret("IDENTITY_KEY_ENCRYPTION_KEY"))
        #expect(ConfigReader.isSecret("DATABASE_URL"))
        #expect(!ConfigReader.isSecret("HTTP_PORT"))
    }
}
