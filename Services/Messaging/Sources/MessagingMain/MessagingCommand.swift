import ArgumentParser
import Messaging
import Platform

@main
struct MessagingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "messaging",
        abstract: "The messaging service of the marketplace suite.",
        subcommands: [ServeCommand<MessagingService>.self, MigrateCommand<MessagingService>.self, DeadLetterCommand<MessagingService>.self,
                      JobsCommand<MessagingService>.self])
}
