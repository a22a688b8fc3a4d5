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
