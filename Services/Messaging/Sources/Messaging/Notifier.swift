import Crypto
import Foundation
import NIOConcurrencyHelpers
import Platform
import PostgresNIO

/// Where mail comes from and where its links point, read at start.
struct MailSettings: Sendable {
    /// `SMTP_URL`: `smtp://host:port` (the dev catcher), `smtp+starttls://user:pass@relay:587`, `smtps://…:465`.
    var smtp: SMTPSettings
    /// `MAIL_FROM`: the sender of every mail.
    var from: MailAddress
    /// `CLIENT_URL`: the web client the links in mails open (`/verify-email?token=…`, `/orders/{id}`).
    var clientURL: String
    /// `PUBLIC_API_URL`: the gateway as mail readers reach it, for one-click unsubscribe links.
    var apiURL: String

    init(config: ConfigReader) throws {
        let url = config.string("SMTP_URL", default: "smtp://127.0.0.1:1025")
        do {
            smtp = try SMTPSettings(url: url, heloName: config.string("SMTP_HELO_NAME", default: "marketplace.local"))
        } catch {
            throw ConfigError.invalidValue(key: "SMTP_URL", expected: "smtp://, smtp+starttls:// or smtps:// URL (\(error))")
        }
        let sender = config.string("MAIL_FROM", default: "no-reply@marketplace.example")
        guard MailMessage.isPlainAddress(sender) else { throw ConfigError.invalidValue(key: "MAIL_FROM", expected: "a plain mail address") }
        from = MailAddress(sender, name: config.string("MAIL_FROM_NAME", default: "Marketplace"))
        clientURL = Self.trimmed(config.string("CLIENT_URL", default: "http://127.0.0.1:3000"))
        apiURL = Self.trimmed(config.string("PUBLIC_API_URL", default: "http://127.0.0.1:8080"))
        for (key, value) in [("CLIENT_URL", clientURL), ("PUBLIC_API_URL", apiURL)] where !MailTemplate.isWebLink(value) {
            throw ConfigError.invalidValue(key: key, expected: "an http(s) URL")
        }
    }

    private static func trimmed(_ url: String) -> String { url.hasSuffix("/") ? String(url.dropLast()) : url }
}

/// Signs and checks unsubscribe links: an HMAC of the user and the kind under a key the
/// migration made (`link_keys`), so every replica checks every link and no secret needs deploying.
struct UnsubscribeLinks: Sendable {
    let key: SymmetricKey

    /// The key the migration made.
    static func load(in tx: Transaction) async throws -> UnsubscribeLinks {
        guard let stored = try await tx.first("SELECT key FROM link_keys WHERE id = 1", as: Data.self) else {
            throw Problem(.serviceUnavailable, "The link key is missing: run the migrations.")
        }
        return UnsubscribeLinks(key: SymmetricKey(data: stored))
    }

    /// `<user>.<kind>.<signature>`, URL-safe.
    func token(user: UUID, kind: String) -> String {
        let message = "\(user.lowercased).\(kind)"
        let mac = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: key)
        return message + "." + Data(mac).base64URL
    }

    /// The user and kind a token names, if its signature holds. Kinds hold dots themselves: the
    /// user is before the first dot, the signature after the last.
    func verify(_ token: String) -> (user: UUID, kind: String)? {
        guard let first = token.firstIndex(of: "."), let last = token.lastIndex(of: "."), first < last else { return nil }
        let userText = String(token[..<first]), kind = String(token[token.index(after: first)..<last])
        guard let user = UUID(uuidString: userText), userText == user.lowercased, NotificationKind.named(kind) != nil,
              let mac = Data(base64URL: String(token[token.index(after: last)...])) else { return nil }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data("\(userText).\(kind)".utf8), using: key) else { return nil }
        return (user, kind)
    }
}

extension Data {
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    init?(base64URL text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        self.init(base64Encoded: base64)
    }
}

/// Turns a cause (an event, a new message) into what its recipient gets: an in-app notification
/// (on their event stream too) and, when they want it by mail and have a verified address, a mail
/// rendered now and queued for the sender job, all in the caller's transaction. One cause gives
/// one notification and one mail however often it is delivered (`cause` is the key).
struct Notifier: Sendable {
    let settings: MailSettings
    /// The unsubscribe key, read once: it never changes.
    private let linkKey = NIOLockedValueBox<UnsubscribeLinks?>(nil)

    init(settings: MailSettings) {
        self.settings = settings
    }

    struct Delivery: Sendable {
        var values: [String: String]
        var links: [String: String]
        /// Identity names the address of security mails; everything else goes to the verified one.
        var address: String? = nil
        var displayName: String? = nil
        /// Security mails leave no in-app trace (a reset link does not belong in a list).
        var inApp = true
    }

    func link(_ path: String) -> String { settings.clientURL + path }

    func notify(_ kindId: String, to user: UUID, cause: String, _ delivery: Delivery, in tx: Transaction) async throws {
        guard let kind = NotificationKind.named(kindId) else { preconditionFailure("unknown notification kind \(kindId)") }
        let rows = try await tx.query("""
            SELECT r.email, coalesce(r.email_verified, false), u.display_name, coalesce(p.email, true)
            FROM (SELECT 1) one
            LEFT JOIN recipients r ON r.user_id = \(user)
            LEFT JOIN users u ON u.id = \(user)
            LEFT JOIN notification_preferences p ON p.user_id = \(user) AND p.kind = \(kind.id)
            """)
        var facts: (email: String?, verified: Bool, name: String?, wantsMail: Bool) = (nil, false, nil, true)
        for try await row in rows.decode((String?, Bool, String?, Bool).self) { facts = row }
        let name = delivery.displayName ?? facts.name ?? "there"
        if delivery.inApp {
            let title = try kind.template.render(displayName: name, values: delivery.values, links: delivery.links, unsubscribe: nil).subject
            let line = try kind.template.summary(values: delivery.values)
            let id = UUID.v7()
            let created = try await tx.first("""
                WITH created AS (
                    INSERT INTO notifications (id, user_id, kind, title, body, link, source_key, created_at)
                    VALUES (\(id), \(user), \(kind.id), \(title), \(line), \(delivery.links.values.sorted().first), \(cause), \(tx.now))
                    ON CONFLICT (user_id, source_key) DO NOTHING
                    RETURNING id, kind, title, body, link, created_at
                ), streamed AS (
                    INSERT INTO stream_events (user_id, type, data, created_at)
                    SELECT \(user), 'notification.created',
                           json_build_object('id', id, 'kind', kind, 'title', title, 'body', body, 'link', link, 'read', false,
                                             'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text, created_at
                    FROM created RETURNING user_id, id
                )
                SELECT (SELECT count(*) FROM created) + 0 * count(pg_notify(\(EventStream.channel), user_id::text || ':' || id::text))
                FROM streamed
                """, as: Int64.self) ?? 0
            // Delivered before: the mail went with it.
            guard created > 0 else { return }
        }
        let address = delivery.address ?? (facts.verified ? facts.email : nil)
        guard let address, !kind.canTurnOff || facts.wantsMail else { return }
        let unsubscribe = kind.canTurnOff ? settings.apiURL + "/v1/notifications/unsubscribe/" + (try await links(tx).token(user: user, kind: kind.id)) : nil
        let mail = try kind.template.render(displayName: name, values: delivery.values, links: delivery.links, unsubscribe: unsubscribe)
        try await MailQueue.enqueue(MailQueue.Outgoing(kind: kind.id, user: user, to: MailAddress(address, name: name), rendered: mail,
                                                       unsubscribe: unsubscribe), cause: cause, in: tx)
    }

    func links(_ tx: Transaction) async throws -> UnsubscribeLinks {
        if let known = linkKey.withLockedValue({ $0 }) { return known }
        let loaded = try await UnsubscribeLinks.load(in: tx)
        linkKey.withLockedValue { $0 = loaded }
        return loaded
    }
}

/// How amounts and days read in mails.
enum MailFormat {
    static func money(_ amount: Int64?, _ currency: String?) -> String {
        guard let amount, let currency, let code = try? Currency(code: currency) else { return "the amount due" }
        let symbols = ["GBP": "£", "EUR": "€", "USD": "$"]
        let text = Money(amount: amount, currency: code).description
        guard let symbol = symbols[currency] else { return text }
        return symbol + text.dropLast(4)
    }

    static func day(_ date: Date?) -> String {
        guard let date else { return "the date shown in your account" }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_GB")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "d MMMM yyyy"
        return formatter.string(from: date)
    }

    static func time(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_GB")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "d MMMM yyyy 'at' HH:mm 'UTC'"
        return formatter.string(from: date)
    }

    /// "30 minutes", "24 hours", "3 days".
    static func duration(_ seconds: TimeInterval) -> String {
        let minutes = Int((seconds / 60).rounded())
        if minutes < 120 { return "\(max(minutes, 1)) minutes" }
        if minutes < 72 * 60 { return "\(minutes / 60) hours" }
        return "\(minutes / 1440) days"
    }
}
