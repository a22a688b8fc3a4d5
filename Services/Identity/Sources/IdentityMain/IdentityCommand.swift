import ArgumentParser
import Identity
import Platform

@main
struct IdentityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity",
        abstract: "The identity service of the marketplace suite.",
        subcommands: [ServeCommand<IdentityService>.self, MigrateCommand<IdentityService>.self])
}
