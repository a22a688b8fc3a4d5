import ArgumentParser
import Foundation
import Identity
import Platform

@main
struct IdentityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity",
        abstract: "The identity service of the marketplace suite.",
        subcommands: [ServeCommand<IdentityService>.self, MigrateCommand<IdentityService>.self, DeadLetterCommand<IdentityService>.self,
                      JobsCommand<IdentityService>.self,
                      Keys.self, CreateAdmin.self])
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

/// `identity create-admin`: bootstraps the first admin (or promotes an existing account).
struct CreateAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-admin",
        abstract: "Create the first admin account, or give an existing account the admin role.",
        discussion: """
            The password is read from standard input (one line) so it never appears in the process list or shell history. \
            An existing account keeps its password. The admin must enrol an authenticator (TOTP) at first sign-in: \
            admin rights reach a token only from a session signed in with a second factor.
            """)

    @Option(help: "The admin's email address.") var email: String
    @Option(help: "The name shown for the admin.") var displayName: String = "Administrator"

    func run() async throws {
        guard let password = readLine(strippingNewline: true), !password.isEmpty else {
            throw ValidationError("Write the password to standard input, for example: printf '%s' \"$PASSWORD\" | identity create-admin --email ...")
        }
        if let problem = PasswordPolicy.shipped.problem(with: password, email: email, displayName: displayName) {
            throw ValidationError("The password \(problem).")
        }
        let result = try await ServiceRuntime<IdentityService>.withDatabase { client, _, logger in
            try await IdentityService.createAdmin(email: email, displayName: displayName, password: password, client: client, logger: logger)
        }
        print(result.created ? "created admin \(result.id)" : "admin role on \(result.id)")
    }
}
