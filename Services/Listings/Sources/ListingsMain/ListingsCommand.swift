import ArgumentParser
import Listings
import Platform

@main
struct ListingsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listings",
        abstract: "The listings service of the marketplace suite.",
        subcommands: [ServeCommand<ListingsService>.self, MigrateCommand<ListingsService>.self, DeadLetterCommand<ListingsService>.self,
                      JobsCommand<ListingsService>.self])
}
