import Foundation
import Logging
import Platform
import PostgresNIO

/// The durable mail queue. A mail is rendered and written (`mails`) in the transaction of the
/// event that caused it, once per cause (`dedup_key`), with a `messaging.send-mail` job beside it.
/// The sender job hands the mails claimed together to the relay over one SMTP connection; a mail
/// the relay took is `sent`; a temporary failure (4xx, no connection, a timeout, the relay's TLS
/// or credentials) is tried again later with backoff, up to `maximumAttempts`; a permanent one
/// (5xx to the mail) is `failed` at once, its reason kept. Nothing is lost while the relay is
/// down: the rows wait, and so do their jobs.
///
/// A mail is sent at least once: if this side dies after the relay took it and before the row
/// says `sent`, it goes again, with the same `Message-ID` (receivers and relays drop the copy).
enum MailQueue {
    struct Payload: Codable, Sendable { var mailId: UUID }

    /// Runs alone (never batched with other kinds): a batch that rolled back would send again
    /// what the relay had already taken.
    static let send = JobKind<Payload>("messaging.send-mail", maxAttempts: 10, backoff: .seconds(5), maximumBackoff: .seconds(600), runsAlone: true)

    /// Attempts before a mail the relay keeps refusing for now is given up (about six hours).
    static let maximumAttempts = 20

    /// The wait before attempt `attempts + 1`: 5 s doubling to at most 30 minutes, jittered.
    static func backoff(after attempts: Int) -> TimeInterval {
        let base = min(5 * pow(2, Double(max(attempts - 1, 0))), 1800)
        return base * Double.random(in: 0.75...1.25)
    }

    struct Outgoing: Sendable {
        var kind: String
        var user: UUID?
        var to: MailAddress
        var rendered: MailTemplate.Rendered
        var unsubscribe: String?
    }

    /// Queues the mail unless its cause already queued one.
    static func enqueue(_ mail: Outgoing, cause: String, in tx: Transaction) async throws {
        let id = UUID.v7()
        let dedup = "\(cause)|\(mail.kind)|\(mail.user?.lowercased ?? mail.to.address)"
        let queued = try await tx.first("""
            INSERT INTO mails (id, dedup_key, user_id, kind, to_address, to_name, subject, text_body, html_body, unsubscribe_url, status, created_at)
            VALUES (\(id), \(dedup), \(mail.user), \(mail.kind), \(mail.to.address), \(mail.to.name ?? ""), \(mail.rendered.subject),
                    \(mail.rendered.text), \(mail.rendered.html), \(mail.unsubscribe), 'queued', \(tx.now))
            ON CONFLICT (dedup_key) DO NOTHING RETURNING id
            """, as: UUID.self)
        guard let queued else { return }
        try await tx.schedule(send, key: queued.lowercased, payload: Payload(mailId: queued), at: tx.now)
    }

    private struct Row: Sendable {
        var id: UUID
        var to: MailAddress
        var subject: String
        var text: String
        var html: String
        var unsubscribe: String?
        var attempts: Int
        var createdAt: Date
    }

    /// The sender job: the claimed set of mails over one connection, then one statement per outcome.
    static func deliver(_ ids: [UUID], client smtp: SMTPClient, from sender: MailAddress, in tx: Transaction) async throws {
        let rows = try await tx.query("""
            SELECT id, to_address, to_name, subject, text_body, html_body, unsubscribe_url, attempts, created_at
            FROM mails WHERE id = ANY(\(ids)) AND status = 'queued' ORDER BY id FOR UPDATE
            """)
        var mails: [Row] = []
        for try await (id, address, name, subject, text, html, unsubscribe, attempts, created)
            in rows.decode((UUID, String, String, String, String, String, String?, Int32, Date).self) {
            mails.append(Row(id: id, to: MailAddress(address, name: name.isEmpty ? nil : name), subject: subject, text: text, html: html,
                             unsubscribe: unsubscribe, attempts: Int(attempts), createdAt: created))
        }
        guard !mails.isEmpty else { return }
        var envelopes: [SMTPClient.Envelope] = []
        var unrenderable: [UUID: String] = [:]
        for mail in mails {
            var headers: [(name: String, value: String)] = []
            if let unsubscribe = mail.unsubscribe {
                headers.append(("List-Unsubscribe", "<\(unsubscribe)>"))
                headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            }
            let domain = sender.address.split(separator: "@").last.map(String.init) ?? "marketplace.local"
            let message = MailMessage(from: sender, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html,
                                      messageId: "\(mail.id.lowercased)@\(domain)", date: mail.createdAt, headers: headers)
            do {
                envelopes.append(SMTPClient.Envelope(message: try message.rendered(), sender: sender.address, recipients: [mail.to.address]))
            } catch {
                unrenderable[mail.id] = "cannot be rendered: \(error)"
                envelopes.append(SMTPClient.Envelope(message: [], sender: sender.address, recipients: []))
            }
        }
        let sendable = mails.indices.filter { unrenderable[mails[$0].id] == nil }
        let outcomes = try await smtp.send(sendable.map { envelopes[$0] }, logger: tx.logger)
        var sent: [UUID] = [], failed: [(UUID, String)] = [], retry: [(Row, String)] = []
        for id in unrenderable.keys.sorted(by: { $0.uuidString < $1.uuidString }) { failed.append((id, unrenderable[id]!)) }
        for (position, index) in sendable.enumerated() {
            let mail = mails[index]
            switch outcomes[position] {
            case nil: sent.append(mail.id)
            case let failure? where failure.kind == .permanent || mail.attempts + 1 >= maximumAttempts:
                failed.append((mail.id, failure.description))
            case let failure?: retry.append((mail, failure.description))
            }
        }
        let now = tx.now
        try await tx.query("""
            UPDATE mails SET status = 'sent', sent_at = \(now), attempts = attempts + 1, last_error = NULL WHERE id = ANY(\(sent))
            """)
        if !failed.isEmpty {
            try await tx.query("""
                UPDATE mails m SET status = 'failed', attempts = m.attempts + 1, last_error = f.reason
                FROM unnest(\(failed.map(\.0)), \(failed.map(\.1))) AS f (id, reason) WHERE m.id = f.id
                """)
            tx.logger.warning("mail given up", metadata: ["mail.count": "\(failed.count)", "mail.reason": "\(failed[0].1)"])
        }
        if !retry.isEmpty {
            try await tx.query("""
                UPDATE mails m SET attempts = m.attempts + 1, last_error = r.reason
                FROM unnest(\(retry.map(\.0.id)), \(retry.map(\.1))) AS r (id, reason) WHERE m.id = r.id
                """)
            try await tx.schedule(send, retry.map { (key: $0.0.id.lowercased, payload: Payload(mailId: $0.0.id),
                                                     due: now.addingTimeInterval(backoff(after: $0.0.attempts + 1))) }, ifExists: .replace)
            tx.logger.notice("mail delivery deferred", metadata: ["mail.count": "\(retry.count)", "mail.reason": "\(retry[0].1)"])
        }
    }
}
