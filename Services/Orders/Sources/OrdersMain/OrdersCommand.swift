import ArgumentParser
import Orders
import Platform

@main
struct OrdersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orders",
        abstract: "The orders service of the marketplace suite.",
        subcommands: [ServeCommand<OrdersService>.self, MigrateCommand<OrdersService>.self, DeadLetterCommand<OrdersService>.self,
                      JobsCommand<OrdersService>.self])
}
