import Foundation
import Testing
@testable import Messaging

@Suite("mail messages and the SMTP client's parts")
struct MailTests {
    static let date = Date(timeIntervalSince1970: 1_796_587_200)  // 2026-12-06 20:00:00 UTC, a Sunday

    static func message(subject: String = "Your order has shipped", text: String = "Hello Ann,\nit is on its way.",
                        html: String? = "<p>Hello Ann,</p>", headers: [(name: String, value: String)] = []) -> MailMessage {
        MailMessage(from: MailAddress("no-reply@marketplace.test", name: "Marketplace"), to: MailAddress("ann@example.com", name: "Ann Smith"),
                    subject: subject, text: text, html: html, messageId: "0193a1b2-0000-7000-8000-000000000001@marketplace.test",
                    date: date, headers: headers)
    }

    static func render(_ message: MailMessage) throws -> String {
        String(decoding: try message.rendered(boundary: "=_b"), as: UTF8.self)
    }

    @Test("a mail with an HTML alternative: its headers, two base64 parts, CRLF everywhere")
    func multipart() throws {
        let raw = try Self.render(Self.message(headers: [("List-Unsubscribe", "<https://marketplace.test/unsubscribe/t1>"),
                                                         ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]))
        let lines = raw.components(separatedBy: "\r\n")
        #expect(lines.starts(with: [
            "From: \"Marketplace\" <no-reply@marketplace.test>", "To: \"Ann Smith\" <ann@example.com>", "Subject: Your order has shipped",
            "Date: Sun, 06 Dec 2026 20:00:00 +0000", "Message-ID: <0193a1b2-0000-7000-8000-000000000001@marketplace.test>",
            "List-Unsubscribe: <https://marketplace.test/unsubscribe/t1>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "MIME-Version: 1.0", "Content-Type: multipart/alternative; boundary=\"=_b\"", "", "--=_b",
            "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64", "",
        ]))
        #expect(!raw.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "no bare line feeds")
        let plain = lines[14]
        #expect(Data(base64Encoded: plain).map { String(decoding: $0, as: UTF8.self) } == "Hello Ann,\nit is on its way.")
        #expect(lines.contains("Content-Type: text/html; charset=utf-8"))
        #expect(lines.suffix(2) == ["--=_b--", ""])
        #expect(lines.allSatisfy { $0.utf8.count <= 78 }, "every line within RFC 5322's 78 characters")
    }

    @Test("a text-only mail has no multipart wrapper; long bodies are cut into 76-character base64 lines")
    func textOnly() throws {
        let body = String(repeating: "Grüße aus York. ", count: 40)
        let raw = try Self.render(Self.message(text: body, html: nil))
        #expect(!raw.contains("multipart"))
        let encoded = raw.components(separatedBy: "\r\n\r\n")[1].components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(encoded.dropLast().allSatisfy { $0.count == 76 })
        #expect(Data(base64Encoded: encoded.joined()).map { String(decoding: $0, as: UTF8.self) } == body)
    }

    @Test("non-ASCII subjects and names become RFC 2047 words that decode back, never splitting a character")
    func encodedWords() throws {
        let subject = "Neue Nachricht von Jürgen über „Welpen“ – 🐶 " + String(repeating: "ä", count: 40)
        let raw = try Self.render(Self.message(subject: subject))
        let header = raw.components(separatedBy: "\r\nDate:")[0].components(separatedBy: "Subject: ")[1]
        let words = header.components(separatedBy: "\r\n ")
        #expect(words.count > 1 && words.allSatisfy { $0.hasPrefix("=?UTF-8?B?") && $0.hasSuffix("?=") && $0.count <= 75 })
        let decoded = words.map { word -> String in
            let payload = word.dropFirst(10).dropLast(2)
            return String(decoding: Data(base64Encoded: String(payload)) ?? Data(), as: UTF8.self)
        }
        #expect(decoded.joined() == subject)
        #expect(try MailMessage.mailbox(MailAddress("j@example.com", name: "Jürgen")) == "=?UTF-8?B?SsO8cmdlbg==?= <j@example.com>")
        #expect(try MailMessage.mailbox(MailAddress("q@example.com", name: "Ann \"The Breeder\" Smith"))
                == "\"Ann \\\"The Breeder\\\" Smith\" <q@example.com>")
    }

    @Test("a line break in a subject, a name or a header, or an address that is not plain, is refused")
    func injection() throws {
        #expect(throws: MailMessage.Invalid.header("Subject")) { try Self.message(subject: "Hi\r\nBcc: all@example.com").rendered() }
        var named = Self.message()
        named.to = MailAddress("ann@example.com", name: "Ann\nBcc: x@example.com")
        #expect(throws: MailMessage.Invalid.header("display name")) { try named.rendered() }
        #expect(throws: MailMessage.Invalid.header("List-Unsubscribe")) {
            try Self.message(headers: [("List-Unsubscribe", "<https://x>\r\nX-Evil: 1")]).rendered()
        }
        for address in ["ann@example.com>\r\nRCPT TO:<x@y.z", "no-at-sign", "two@@signs", "spa ce@example.com", "<ann@example.com>"] {
            var message = Self.message()
            message.to = MailAddress(address)
            #expect(throws: MailMessage.Invalid.address(address)) { try message.rendered() }
        }
    }

    @Test("DATA: a leading dot doubled, bare line feeds made CRLF, the final dot line added")
    func dotStuffing() {
        let stuffed = SMTPSession.dotStuffed(Array(".first\r\nmiddle\n..two\r\nlast".utf8))
        #expect(String(decoding: stuffed, as: UTF8.self) == "..first\r\nmiddle\r\n...two\r\nlast\r\n.\r\n")
        #expect(String(decoding: SMTPSession.dotStuffed(Array("ends\r\n".utf8)), as: UTF8.self) == "ends\r\n.\r\n")
    }

    @Test("SMTP_URL: schemes, default ports, credentials only over TLS")
    func settings() throws {
        let dev = try SMTPSettings(url: "smtp://127.0.0.1:1025")
        #expect(dev.security == .none && dev.host == "127.0.0.1" && dev.port == 1025 && dev.username == nil)
        let relay = try SMTPSettings(url: "smtp+starttls://mailer%40example.com:p%3Ass@relay.example.com")
        #expect(relay.security == .startTLS && relay.port == 587 && relay.username == "mailer@example.com" && relay.password == "p:ss")
        #expect(try SMTPSettings(url: "smtps://u:p@relay.example.com").port == 465)
        #expect(throws: SMTPSettings.Invalid.url("credentials are sent only over TLS: use smtp+starttls:// or smtps://")) {
            try SMTPSettings(url: "smtp://u:p@relay.example.com")
        }
        #expect(throws: SMTPSettings.Invalid.self) { try SMTPSettings(url: "http://relay.example.com") }
        #expect(throws: SMTPSettings.Invalid.self) { try SMTPSettings(url: "smtp://") }
        #expect(throws: SMTPSettings.Invalid.self) { try SMTPSettings(url: "smtps://user@relay.example.com") }
    }

    @Test("a 5xx to the mail is permanent; a 4xx, or a 5xx to the session (TLS, AUTH, greeting), is retried")
    func classification() {
        let refused = SMTPReply(code: 550, lines: ["5.1.1 no such user"])
        #expect(SMTPError.from(refused, at: "rcpt").kind == .permanent)
        #expect(SMTPError.from(SMTPReply(code: 451, lines: ["4.3.0 try later"]), at: "rcpt").kind == .transient)
        #expect(SMTPError.from(SMTPReply(code: 535, lines: ["5.7.8 bad credentials"]), at: "auth", relayWide: true).kind == .transient)
        #expect(SMTPError.from(refused, at: "rcpt").description == "permanent SMTP failure at rcpt (550): 5.1.1 no such user")
    }
}

@Suite("notification templates")
struct MailTemplateTests {
    static let hostile = "<script>alert('x')</script> & \"friends\""

    /// Every placeholder of a kind filled, values with markup in them.
    static func sample(_ kind: NotificationKind) -> (values: [String: String], links: [String: String]) {
        let (values, links) = kind.template.placeholders
        return (Dictionary(uniqueKeysWithValues: values.map { ($0, "\($0) \(hostile)") }),
                Dictionary(uniqueKeysWithValues: links.map { ($0, "https://marketplace.example.com/\($0)?a=1&b=2") }))
    }

    @Test("every kind renders with its placeholders filled; what users typed is escaped in HTML and kept in text")
    func everyKindRenders() throws {
        #expect(Set(NotificationKind.all.map(\.id)).count == NotificationKind.all.count, "ids are unique")
        for kind in NotificationKind.all {
            let (values, links) = Self.sample(kind)
            let mail = try kind.template.render(displayName: "Ann \(Self.hostile)", values: values, links: links,
                                                unsubscribe: kind.canTurnOff ? "https://marketplace.example.com/unsubscribe/t" : nil)
            #expect(!mail.subject.isEmpty && !mail.subject.contains("{{"), "\(kind.id)")
            #expect(!mail.text.contains("{{") && !mail.html.contains("{{"), "\(kind.id)")
            #expect(!mail.html.contains("<script>"), "\(kind.id): no markup from values")
            #expect(mail.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;friends&quot;"), "\(kind.id)")
            #expect(mail.text.contains("Hello Ann \(Self.hostile),"), "\(kind.id): the text part is plain text")
            for link in links.values {
                #expect(mail.html.contains("href=\"\(link.replacingOccurrences(of: "&", with: "&amp;"))\""), "\(kind.id)")
                #expect(mail.text.contains(link), "\(kind.id)")
            }
            #expect(mail.text.contains("turn these mails off") == kind.canTurnOff, "\(kind.id): the footer only where it may be turned off")
            // The rendered parts make a valid message (the subject stays one header line).
            _ = try MailMessage(from: MailAddress("no-reply@marketplace.test"), to: MailAddress("ann@example.com"), subject: mail.subject,
                                text: mail.text, html: mail.html, messageId: "m@marketplace.test", date: Date()).rendered()
        }
    }

    @Test("security mails cannot be turned off; the others can")
    func securityMails() {
        let alwaysOn = Set(NotificationKind.all.filter { !$0.canTurnOff }.map(\.id))
        #expect(alwaysOn == ["account.email_verification", "account.password_reset", "account.password_changed"])
    }

    @Test("a value's line breaks stay out of the subject; a missing value or link, a link in a subject or a non-web link is refused")
    func refusals() throws {
        let template = MailTemplate(subject: "Message from {{name}}", paragraphs: ["{{link:go|Open}}"])
        let mail = try template.render(displayName: "Ann", values: ["name": "Bob\r\nBcc: all@example.com"], links: ["go": "https://x.example.com/"],
                                       unsubscribe: nil)
        #expect(mail.subject == "Message from Bob  Bcc: all@example.com")
        #expect(throws: MailTemplate.Invalid.missingValue("name")) {
            try template.render(displayName: "Ann", values: [:], links: ["go": "https://x.example.com/"], unsubscribe: nil)
        }
        #expect(throws: MailTemplate.Invalid.missingLink("go")) {
            try template.render(displayName: "Ann", values: ["name": "Bob"], links: [:], unsubscribe: nil)
        }
        for bad in ["javascript:alert(1)", "/relative/path", "https://", "https://x.example.com/a b", "data:text/html,<b>x</b>"] {
            #expect(throws: MailTemplate.Invalid.badLink("go")) {
                try template.render(displayName: "Ann", values: ["name": "Bob"], links: ["go": bad], unsubscribe: nil)
            }
        }
        #expect(throws: MailTemplate.Invalid.linkInSubject("go")) {
            try MailTemplate(subject: "{{link:go}}", paragraphs: []).render(displayName: "A", values: [:], links: ["go": "https://x.example.com"],
                                                                             unsubscribe: nil)
        }
    }
}
