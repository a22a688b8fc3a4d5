import Foundation
import Platform
import PostgresNIO

/// What messaging forgets when a user is erased. The conversations stay (the other party's side
/// of them is theirs), but what the erased user wrote is replaced, what was addressed to them
/// (notifications, mails, stream events, their address) is deleted, and their name is taken out
/// of what was rendered for the people they dealt with (those people's notifications and mails).
enum Erasure {
    /// What an erased user's words become.
    static let erasedText = "[removed at the author's request]"
    static let erasedName = "Deleted user"

    static func erase(_ user: UUID, in tx: Transaction) async throws {
        let name = try await tx.first("SELECT display_name FROM users WHERE id = \(user)", as: String.self)
        try await UsersProjection.erase(user, in: tx)
        try await tx.query("DELETE FROM recipients WHERE user_id = \(user)")
        try await tx.query("DELETE FROM mails WHERE user_id = \(user)")
        try await tx.query("DELETE FROM notifications WHERE user_id = \(user)")
        try await tx.query("DELETE FROM stream_events WHERE user_id = \(user)")
        try await tx.query("UPDATE messages SET body = \(erasedText), masked_body = NULL WHERE author_id = \(user)")
        try await tx.query("UPDATE reports SET reason = \(erasedText) WHERE reporter_id = \(user)")

        // The people the user dealt with: both sides of their conversations and their orders.
        var others: [UUID] = []
        for try await id in try await tx.query("""
            SELECT DISTINCT other FROM (
                SELECT CASE WHEN buyer_id = \(user) THEN vendor_id ELSE buyer_id END AS other
                FROM conversations WHERE buyer_id = \(user) OR vendor_id = \(user)
                UNION
                SELECT CASE WHEN buyer_id = \(user) THEN vendor_id ELSE buyer_id END
                FROM order_facts WHERE buyer_id = \(user) OR vendor_id = \(user)
            ) parties WHERE other IS NOT NULL
            """).decode(UUID.self) {
            others.append(id)
        }
        guard !others.isEmpty else { return }
        // Their streams' replay buffer (a day) mentions the user by id or by name: those events go.
        try await tx.query("DELETE FROM stream_events WHERE user_id = ANY(\(others)) AND strpos(data, \(user.lowercased)) > 0")
        guard let name, !name.isEmpty else { return }
        // The name as a whole word (a regular expression with the name's own characters escaped),
        // in plain text and as the mails' HTML escaped it.
        let word = "\\m" + regexEscaped(name) + "\\M"
        let html = "\\m" + regexEscaped(MailTemplate.escape(name)) + "\\M"
        try await tx.query("DELETE FROM stream_events WHERE user_id = ANY(\(others)) AND data ~ \(word)")
        try await tx.query("""
            UPDATE notifications SET title = regexp_replace(title, \(word), \(erasedName), 'g'),
                body = regexp_replace(body, \(word), \(erasedName), 'g')
            WHERE user_id = ANY(\(others)) AND (title ~ \(word) OR body ~ \(word))
            """)
        try await tx.query("""
            UPDATE mails SET subject = regexp_replace(subject, \(word), \(erasedName), 'g'),
                text_body = regexp_replace(text_body, \(word), \(erasedName), 'g'),
                html_body = regexp_replace(html_body, \(html), \(erasedName), 'g')
            WHERE user_id = ANY(\(others)) AND (subject ~ \(word) OR text_body ~ \(word) OR html_body ~ \(html))
            """)
    }

    /// `text` as a POSIX regular expression that matches it literally.
    static func regexEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            if "\\.^$|?*+()[]{}".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }
}
