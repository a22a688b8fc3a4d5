import Foundation
import Testing
@testable import Platform

@Suite struct MigrationTests {
    let first = Migration(id: "0001_create", sql: "CREATE TABLE a (id int);")
    let second = Migration(id: "0002_add", sql: "ALTER TABLE a ADD b int;")

    @Test func checksumIsSHA256OfTheText() {
        #expect(Migration(id: "x", sql: "").checksum == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(first.checksum != Migration(id: first.id, sql: first.sql + " ").checksum)
    }

    @Test func pendingIsWhatIsNotApplied() throws {
        let set = MigrationSet([first, second])
        #expect(try set.pending(applied: [:]) == [first, second])
        #expect(try set.pending(applied: [first.id: first.checksum]) == [second])
        #expect(try set.pending(applied: [first.id: first.checksum, second.id: second.checksum]).isEmpty)
    }

    @Test func aChangedAppliedFileIsRefused() {
        let set = MigrationSet([first, second])
        #expect(throws: MigrationError.changedAfterApplied(id: first.id)) {
            try set.pending(applied: [first.id: "0000"])
        }
    }

    @Test func anUnknownAppliedMigrationInsideThisBuildsSeriesIsRefused() {
        // 0002 is applied but this build has 0001 and 0003: a renamed or removed file, not a newer build.
        let third = Migration(id: "0003_more", sql: "SELECT 3;")
        #expect(throws: MigrationError.unknownApplied(id: "0002_renamed")) {
            try MigrationSet([first, third]).pending(applied: [first.id: first.checksum, "0002_renamed": "abc"])
        }
        #expect(throws: MigrationError.unknownApplied(id: "notes")) {
            try MigrationSet([first]).pending(applied: [first.id: first.checksum, "notes": "abc"])
        }
    }

    @Test func aDatabaseAheadOfThisBuildIsAcceptedForRollbacks() throws {
        // The previous build, rolled back to after 0009 (an expand step) was applied by the newer one.
        let platform = Migration(id: "platform_0001_outbox_inbox", sql: "SELECT 1;")
        let set = MigrationSet([platform, first])
        let applied = [platform.id: platform.checksum, first.id: first.checksum, "0009_future": "abc", "platform_0002_next": "def"]
        #expect(try set.pending(applied: applied).isEmpty)
        #expect(set.newerApplied(applied: applied) == ["0009_future", "platform_0002_next"])
        // Still refused: its own applied file changed, whatever is ahead.
        #expect(throws: MigrationError.changedAfterApplied(id: first.id)) {
            try set.pending(applied: applied.merging([first.id: "0000"]) { $1 })
        }
        // Its own files still apply when missing, even with newer ones present.
        #expect(try set.pending(applied: [platform.id: platform.checksum, "0009_future": "abc"]) == [first])
    }

    @Test func filesLoadInNumericOrderAndBadNamesAreRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "SELECT 2;".write(to: directory.appendingPathComponent("0010_second.sql"), atomically: true, encoding: .utf8)
        try "SELECT 1;".write(to: directory.appendingPathComponent("0002_first.sql"), atomically: true, encoding: .utf8)
        try "notes".write(to: directory.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        #expect(try MigrationSet.load(directory: directory).map(\.id) == ["0002_first", "0010_second"])
        try "SELECT 3;".write(to: directory.appendingPathComponent("third.sql"), atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.badFileName("third.sql")) { try MigrationSet.load(directory: directory) }
    }

    @Test func scriptsSplitOnTopLevelSemicolonsOnly() {
        let script = """
            -- a comment; with a semicolon
            CREATE TABLE t (note text DEFAULT 'a;b', "odd;name" int);
            /* block; comment */
            CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
            INSERT INTO t (note) VALUES ('it''s; fine');
            -- trailing comment only
            """
        let statements = SQLStatements.split(script)
        #expect(statements.count == 3)
        #expect(statements[0].hasSuffix("\"odd;name\" int)"))
        #expect(statements[1].contains("$body$ SELECT 1; $body$"))
        #expect(statements[2] == "INSERT INTO t (note) VALUES ('it''s; fine')")
    }

    @Test func advisoryLockKeysAreStable() {
        #expect(Database.advisoryLockKey("identity.migrations") == Database.advisoryLockKey("identity.migrations"))
        #expect(Database.advisoryLockKey("identity.migrations") != Database.advisoryLockKey("listings.migrations"))
    }
}
