import ArgumentParser
import Foundation
import Identity
import Platform

@main
struct IdentityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity",
        abstract: "The identity service of the marketplace suite.",
        subcommands: [ServeCommand<IdentityService>.self, MigrateCommand<IdentityService>.self, Keys.self])
}

/// `identity keys rotate` / `identity keys list`: operate the access-token signing keys.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operate the access-token signing keys.", subcommands: [Rotate.self, List.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new signing key current; retire keys no valid token can still need.",
            discussion: "The previous key stays in the JWKS until every token it signed has expired. Running replicas switch to the new key within a minute.")

        func run() async throws {
            let rotation = try await ServiceRuntime<IdentityService>.withDatabase { client, config, logger in
                try await IdentityService.keyRing(client: client, config: config, logger: logger)
                    .rotate(retireAfter: IdentityService.keyRetirementAge)
            }
            print("current: \(rotation.created)")
            for kid in rotation.retired { print("retired: \(kid)") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the signing keys, newest first.")

        func run() async throws {
            let keys = try await ServiceRuntime<IdentityService>.withDatabase { client, config, logger in
                try await IdentityService.keyRing(client: client, config: config, logger: logger).inventory()
                    .map { "\($0.kid) created \(EventCoding.formatTime($0.created)) \($0.retired.map { "retired " + EventCoding.formatTime($0) } ?? "live")" }
            }
            keys.forEach { print($0) }
        }
    }
}
