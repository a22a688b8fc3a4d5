import Foundation
import Logging
import Platform
import PostgresNIO
import Testing

@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct PostgresIntegrationTests {
    let logger = TestInfrastructure.logger

    @Test func migratingTwiceIsANoOpAndAChangedFileIsRefused() async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                let set = MigrationSet(PlatformMigrations.all + [TestInfrastructure.effectsMigration])
                let migrator = Migrator(client: client, schema: schema, migrations: set, logger: logger)
                #expect(try await migrator.pendingCount() == 3)
                #expect(try await migrator.migrate() == ["platform_0001_outbox_inbox", "platform_0002_jobs_idempotency_clock", "0001_effects"])
                #expect(try await migrator.migrate() == [])
                #expect(try await migrator.pendingCount() == 0)
                let changed = MigrationSet(PlatformMigrations.all + [Migration(id: "0001_effects", sql: "CREATE TABLE effects (id int);")])
                await #expect(throws: MigrationError.changedAfterApplied(id: "0001_effects")) {
                    try await Migrator(client: client, schema: schema, migrations: changed, logger: logger).migrate()
                }
            }
        }
    }

    @Test func thePreviousBuildRunsOnADatabaseANewerBuildExpanded() async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                let previous = MigrationSet(PlatformMigrations.all + [TestInfrastructure.effectsMigration])
                let expand = Migration(id: "0002_expand", sql: "ALTER TABLE effects ADD COLUMN note text;")
                let newer = MigrationSet(previous.migrations + [expand])
                #expect(try await Migrator(client: client, schema: schema, migrations: newer, logger: logger).migrate().count == 4)
                // Rolled back: the previous build migrates nothing, is ready, and sees what is ahead.
                let rolledBack = Migrator(client: client, schema: schema, migrations: previous, logger: logger)
                #expect(try await rolledBack.migrate() == [])
                #expect(try await rolledBack.pendingCount() == 0)
                // An unknown applied file inside the build's own range is still refused.
                try await client.query("INSERT INTO schema_migrations (id, checksum) VALUES ('0000_renamed', 'x')", logger: logger)
                await #expect(throws: MigrationError.unknownApplied(id: "0000_renamed")) { try await rolledBack.migrate() }
            }
        }
    }

    @Test func concurrentMigrationsApplyEachFileOnce() async throws {
        try await TestInfrastructure.withPostgres { admin async throws in
            let schema = try await TestInfrastructure.makeSchema(admin)
            try await TestInfrastructure.withPostgres(schema: schema) { client async throws in
                let set = MigrationSet(PlatformMigrations.all + [TestInfrastructure.effectsMigration])
                let applied = try await withThrowingTaskGroup(of: [String].self) { group async throws in
                    for _ in 0..<3 {
                        group.addTask { try await Migrator(client: client, schema: schema, migrations: set, logger: logger).migrate() }
                    }
                    var all: [String] = []
                    for try await ids in group { all += ids }
                    return all
                }
                #expect(applied.sorted() == ["0001_effects", "platform_0001_outbox_inbox", "platform_0002_jobs_idempotency_clock"])
                #expect(try await TestInfrastructure.scalar(client, "SELECT count(*) FROM schema_migrations") == 3)
            }
        }
    }

    @Test func aServiceRoleCannotReadAnotherServicesSchema() async throws {
        guard let listingsURL = TestInfrastructure.environment["TEST_DATABASE_URL_LISTINGS"] else {
            Issue.record("TEST_DATABASE_URL_LISTINGS is not set")
            return
        }
        try await TestInfrastructure.withPostgres { admin async throws in
            try await admin.query("CREATE TABLE IF NOT EXISTS identity.isolation_probe (secret text)", logger: logger)
        }
        try await TestInfrastructure.withPostgres(url: listingsURL) { listings async throws in
            do {
                try await listings.query("SELECT secret FROM identity.isolation_probe", logger: logger)
                Issue.record("the listings role read identity's schema")
            } catch {
                #expect(Database.isSQLState(error, .insufficientPrivilege), "\(String(reflecting: error))")
            }
            do {
                try await listings.query("CREATE TABLE public.sneaky (id int)", logger: logger)
                Issue.record("the listings role created a table in public")
            } catch {
                #expect(Database.isSQLState(error, .insufficientPrivilege), "\(String(reflecting: error))")
            }
            // Its own schema is writable.
            try await listings.query("CREATE TABLE listings.isolation_probe (id int)", logger: logger)
            try await listings.query("DROP TABLE listings.isolation_probe", logger: logger)
        }
        try await TestInfrastructure.withPostgres { admin async throws in
            try await admin.query("DROP TABLE identity.isolation_probe", logger: logger)
        }
    }
}
