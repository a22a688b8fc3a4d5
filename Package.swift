// swift-tools-version:6.2
import PackageDescription

// The marketplace suite: six executables (gateway and five services), the shared platform they
// stand on, the dev broker, and the tests. See README.md and Services/<Name>/README.md.

let platform: [Target.Dependency] = [
    "Platform", "Contracts",
    .product(name: "Hummingbird", package: "hummingbird"),
    .product(name: "PostgresNIO", package: "postgres-nio"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
    .product(name: "HTTPTypes", package: "swift-http-types"),
]

/// A service: its library (domain, HTTP, persistence, migrations as resources) and a tiny executable.
func service(_ name: String, executable: String, extra: [Target.Dependency] = [], resources: [Resource] = []) -> [Target] {
    [
        .target(
            name: name, dependencies: platform + extra,
            path: "Services/\(name)/Sources/\(name)",
            resources: [.copy("Migrations")] + resources),
        .executableTarget(
            name: "\(name)Main",
            dependencies: [.target(name: name), "Platform", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Services/\(name)/Sources/\(name)Main"),
    ]
}

let package = Package(
    name: "marketplace",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gateway", targets: ["GatewayMain"]),
        .executable(name: "identity", targets: ["IdentityMain"]),
        .executable(name: "listings", targets: ["ListingsMain"]),
        .executable(name: "billing", targets: ["BillingMain"]),
        .executable(name: "orders", targets: ["OrdersMain"]),
        .executable(name: "messaging", targets: ["MessagingMain"]),
        .executable(name: "devbroker", targets: ["DevBroker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // librdkafka (Debian librdkafka-dev) and the thin Swift wrapper over it.
        .systemLibrary(name: "CRdKafka", path: "Shared/CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Kafka",
            exclude: ["README.md"]),
        .executableTarget(
            name: "DevBroker",
            dependencies: ["Kafka", "Contracts", .product(name: "Logging", package: "swift-log")],
            path: "Shared/DevBroker"),
        // libargon2 (Debian libargon2-dev), for identity's password hashing.
        .systemLibrary(name: "CArgon2", path: "Shared/CArgon2", pkgConfig: "libargon2", providers: [.apt(["libargon2-dev"])]),
        // Event payload types: the only code services share about each other's domain.
        .target(name: "Contracts", path: "Shared/Contracts"),
        // The platform every service stands on: config, logging, metrics, health, problems,
        // Postgres and migrations, token verification, outbox, inbox and dead letters.
        .target(
            name: "Platform",
            dependencies: [
                "Kafka", "Contracts",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Shared/Platform",
            exclude: ["README.md"]),
    ]
        + service("Identity", executable: "identity", extra: ["CArgon2", .product(name: "Crypto", package: "swift-crypto")],
                  resources: [.copy("CommonPasswords.txt")])
        + service("Listings", executable: "listings")
        + service("Billing", executable: "billing", extra: [.product(name: "Crypto", package: "swift-crypto"),
                                                            .product(name: "AsyncHTTPClient", package: "async-http-client")])
        + service("Orders", executable: "orders")
        + service("Messaging", executable: "messaging", extra: [.product(name: "NIOSSL", package: "swift-nio-ssl"),
                                                                .product(name: "Crypto", package: "swift-crypto")])
        + [
            .target(
                name: "Gateway",
                dependencies: [
                    "Platform", "Contracts", "Kafka",
                    .product(name: "AsyncHTTPClient", package: "async-http-client"),
                    .product(name: "Prometheus", package: "swift-prometheus"),
                    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                    .product(name: "NIOCore", package: "swift-nio"),
                    .product(name: "NIOPosix", package: "swift-nio"),
                    .product(name: "NIOHTTP1", package: "swift-nio"),
                    .product(name: "NIOExtras", package: "swift-nio-extras"),
                    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                    .product(name: "HTTPTypes", package: "swift-http-types"),
                    .product(name: "Crypto", package: "swift-crypto"),
                ],
                path: "Services/Gateway/Sources/Gateway",
                resources: [.copy("Resources")]),
            .executableTarget(
                name: "GatewayMain",
                dependencies: ["Gateway", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                path: "Services/Gateway/Sources/GatewayMain"),
            .testTarget(
                name: "PlatformTests",
                dependencies: ["Platform", "Contracts", "Kafka", .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                               .product(name: "HTTPTypes", package: "swift-http-types")],
                path: "Tests/PlatformTests"),
            .testTarget(
                name: "ServiceTests",
                dependencies: ["Identity", "Gateway", "Billing", "Listings", "Orders", "Messaging", "Platform", "Contracts", "Kafka",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HTTPTypes", package: "swift-http-types"),
                               .product(name: "AsyncHTTPClient", package: "async-http-client"),
                               .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Logging", package: "swift-log"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Tests/ServiceTests"),
            .testTarget(
                name: "IntegrationTests",
                dependencies: ["Platform", "Kafka", "Orders", "Identity", "Listings", "Billing", "Messaging", "Contracts", .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "AsyncHTTPClient", package: "async-http-client"),
                               .product(name: "NIOHTTP1", package: "swift-nio"),
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HummingbirdTesting", package: "hummingbird"),
                               .product(name: "HTTPTypes", package: "swift-http-types"),
                               .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                               .product(name: "Logging", package: "swift-log")],
                path: "Tests/IntegrationTests"),
            // Test and benchmark tool (not deployed): the platform's job runner as a process that can be killed.
            .executableTarget(
                name: "JobProbe",
                dependencies: ["Platform", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                               .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log")],
                path: "Tests/JobProbe"),
            .testTarget(
                name: "KafkaTests",
                dependencies: ["Kafka", .product(name: "Logging", package: "swift-log"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Tests/KafkaTests"),
        ]
)
