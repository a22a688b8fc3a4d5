import Foundation

/// A mail address with an optional display name.
public struct MailAddress: Sendable, Equatable {
    public var address: String
    public var name: String?

    public init(_ address: String, name: String? = nil) {
        self.address = address
        self.name = name
    }
}

/// An RFC 5322 message of a text part and, optionally, an HTML alternative, with the headers a
/// notification needs (`List-Unsubscribe` among them). `rendered()` is what goes after DATA.
public struct MailMessage: Sendable, Equatable {
    public var from: MailAddress
    public var to: MailAddress
    public var subject: String
    public var text: String
    public var html: String?
    /// `<id@domain>` without the brackets; unique per mail, stable across retries of it.
    public var messageId: String
    public var date: Date
    /// Further headers, in order (`List-Unsubscribe`, `List-Unsubscribe-Post`, ...).
    public var headers: [(name: String, value: String)]

    public init(from: MailAddress, to: MailAddress, subject: String, text: String, html: String? = nil, messageId: String,
                date: Date, headers: [(name: String, value: String)] = []) {
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.messageId = messageId
        self.date = date
        self.headers = headers
    }

    public static func == (lhs: MailMessage, rhs: MailMessage) -> Bool {
        lhs.from == rhs.from && lhs.to == rhs.to && lhs.subject == rhs.subject && lhs.text == rhs.text && lhs.html == rhs.html
            && lhs.messageId == rhs.messageId && lhs.date == rhs.date
            && lhs.headers.map(\.name) == rhs.headers.map(\.name) && lhs.headers.map(\.value) == rhs.headers.map(\.value)
    }

    /// Why a message cannot be rendered: a value that would break out of its header.
    public enum Invalid: Error, Equatable {
        case address(String)
        case header(String)
    }

    /// The message as sent: CRLF line endings, 7-bit (non-ASCII header text as RFC 2047 encoded
    /// words, bodies in base64), lines within RFC 5322's 78 characters.
    public func rendered(boundary: String = "=_" + UUID().uuidString.lowercased()) throws -> [UInt8] {
        for mailbox in [from, to] where !Self.isPlainAddress(mailbox.address) { throw Invalid.address(mailbox.address) }
        var lines: [String] = []
        lines.append("From: \(try Self.mailbox(from))")
        lines.append("To: \(try Self.mailbox(to))")
        lines.append("Subject: \(try Self.headerText(subject, field: "Subject"))")
        lines.append("Date: \(Self.rfc5322Date(date))")
        guard Self.isPlainAddress(messageId) else { throw Invalid.header("Message-ID") }
        lines.append("Message-ID: <\(messageId)>")
        for header in headers {
            guard header.name.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") }) else { throw Invalid.header(header.name) }
            lines.append("\(header.name): \(try Self.headerText(header.value, field: header.name))")
        }
        lines.append("MIME-Version: 1.0")
        if let html {
            lines.append("Content-Type: multipart/alternative; boundary=\"\(boundary)\"")
            lines.append("")
            lines.append("--\(boundary)")
            lines += Self.part(text, subtype: "plain")
            lines.append("--\(boundary)")
            lines += Self.part(html, subtype: "html")
            lines.append("--\(boundary)--")
        } else {
            lines += Self.part(text, subtype: "plain")
        }
        return Array((lines.joined(separator: "\r\n") + "\r\n").utf8)
    }

    static func part(_ body: String, subtype: String) -> [String] {
        ["Content-Type: text/\(subtype); charset=utf-8", "Content-Transfer-Encoding: base64", ""] + base64Lines(Array(body.utf8))
    }

    /// Base64 in lines of 76 characters (RFC 2045).
    static func base64Lines(_ bytes: [UInt8]) -> [String] {
        let encoded = Data(bytes).base64EncodedString()
        var lines: [String] = []
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let end = encoded.index(index, offsetBy: 76, limitedBy: encoded.endIndex) ?? encoded.endIndex
            lines.append(String(encoded[index..<end]))
            index = end
        }
        return lines.isEmpty ? [""] : lines
    }

    /// `local@domain` with nothing that could end the header or the SMTP command it goes into.
    static func isPlainAddress(_ address: String) -> Bool {
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && address.utf8.count <= 254
            && address.utf8.allSatisfy { $0 > 32 && $0 < 127 && !"<>()[],;:\\\"".utf8.contains($0) }
    }

    /// `"Display Name" <address>`, the name quoted or encoded; just the address without one.
    static func mailbox(_ mailbox: MailAddress) throws -> String {
        guard let name = mailbox.name, !name.isEmpty else { return mailbox.address }
        guard !name.contains(where: \.isNewline) else { throw Invalid.header("display name") }
        if name.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 32 && $0.value < 127 }) {
            let quoted = name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(quoted)\" <\(mailbox.address)>"
        }
        return "\(encodedWords(name)) <\(mailbox.address)>"
    }

    /// A header's text: as it is when printable ASCII, else RFC 2047 encoded words. A line
    /// break in it would start a header of the caller's choosing: refused.
    static func headerText(_ text: String, field: String) throws -> String {
        guard !text.contains(where: \.isNewline) else { throw Invalid.header(field) }
        if text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 32 && $0.value < 127 }), text.utf8.count <= 900 {
            return text
        }
        return encodedWords(text)
    }

    /// `=?UTF-8?B?...?=` words of at most 75 characters, never splitting a character, folded
    /// onto continuation lines.
    static func encodedWords(_ text: String) -> String {
        var words: [String] = []
        var chunk: [UInt8] = []
        for character in text {
            let bytes = Array(String(character).utf8)
            // 12 characters of `=?UTF-8?B?` and `?=`; 45 bytes make 60 base64 characters.
            if chunk.count + bytes.count > 45 {
                words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty || words.isEmpty { words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=") }
        return words.joined(separator: "\r\n ")
    }

    static func rfc5322Date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int?) -> String { String(format: "%02d", n ?? 0) }
        return "\(days[(c.weekday ?? 1) - 1]), \(two(c.day)) \(months[(c.month ?? 1) - 1]) \(c.year ?? 1970) "
            + "\(two(c.hour)):\(two(c.minute)):\(two(c.second)) +0000"
    }
}
