import ArgumentParser
import Billing
import Platform

@main
struct BillingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "billing",
        abstract: "The billing service of the marketplace suite.",
        subcommands: [ServeCommand<BillingService>.self, MigrateCommand<BillingService>.self, DeadLetterCommand<BillingService>.self,
                      JobsCommand<BillingService>.self])
}
