import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// How the mail relay is reached, from `SMTP_URL`:
///
/// - `smtp://127.0.0.1:1025`: plaintext, no AUTH (the dev mail catcher);
/// - `smtp+starttls://user:password@relay.example.com:587`: STARTTLS before anything else (a
///   relay that does not offer it is an error, never a fallback to plaintext), then AUTH;
/// - `smtps://user:password@relay.example.com:465`: TLS from the first byte, then AUTH.
///
/// The relay's certificate chain and host name are always verified (`SMTP_CA_FILE` adds a
/// private CA). Credentials are refused on a plaintext URL.
public struct SMTPSettings: Sendable, Equatable {
    public enum Security: String, Sendable, Equatable {
        case none, startTLS, tls
    }

    public var host: String
    public var port: Int
    public var security: Security
    public var username: String?
    public var password: String?
    /// The name this side gives in EHLO.
    public var heloName: String
    /// The longest wait for the connection and for each of the relay's replies.
    public var timeout: Duration
    public var certificateAuthorityFile: String?

    public enum Invalid: Error, Equatable, CustomStringConvertible {
        case url(String)

        public var description: String {
            switch self {
            case .url(let why): "SMTP_URL: \(why)"
            }
        }
    }

    public init(url: String, heloName: String = "localhost", timeout: Duration = .seconds(30), certificateAuthorityFile: String? = nil) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw Invalid.url("not a URL")
        }
        switch scheme {
        case "smtp": (security, port) = (.none, components.port ?? 25)
        case "smtp+starttls": (security, port) = (.startTLS, components.port ?? 587)
        case "smtps": (security, port) = (.tls, components.port ?? 465)
        default: throw Invalid.url("the scheme is smtp, smtp+starttls or smtps, not \(scheme)")
        }
        guard let host = components.host, !host.isEmpty else { throw Invalid.url("no host") }
        guard (1...65535).contains(port) else { throw Invalid.url("port \(port) is out of range") }
        self.host = host
        self.username = components.user?.removingPercentEncoding
        self.password = components.password?.removingPercentEncoding
        if username != nil, security == .none { throw Invalid.url("credentials are sent only over TLS: use smtp+starttls:// or smtps://") }
        if (username == nil) != (password == nil) { throw Invalid.url("a user needs a password, and the other way round") }
        self.heloName = heloName
        self.timeout = timeout
        self.certificateAuthorityFile = certificateAuthorityFile
    }
}

/// Why a mail was not taken. `transient`: try again later (the relay said 4xx, could not be
/// reached or did not answer in time, or refused this side's TLS or credentials, which an
/// operator fixes); `permanent`: the relay refused this mail for good (5xx to its sender,
/// recipient or content), and sending it again would be refused again.
public struct SMTPError: Error, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case transient, permanent }

    public var kind: Kind
    /// The relay's reply code, when it gave one.
    public var code: Int?
    /// The step that failed: connect, greeting, ehlo, starttls, auth, mail, rcpt, data, message.
    public var stage: String
    public var message: String

    public var description: String {
        "\(kind.rawValue) SMTP failure at \(stage)" + (code.map { " (\($0))" } ?? "") + ": \(message)"
    }

    static func from(_ reply: SMTPReply, at stage: String, relayWide: Bool = false) -> SMTPError {
        // A refusal of this side's session (its TLS, its credentials, its greeting) is the
        // relay's configuration or this one's, not the mail's: retried until an operator fixes it.
        let kind: Kind = reply.code >= 500 && !relayWide ? .permanent : .transient
        return SMTPError(kind: kind, code: reply.code, stage: stage, message: reply.text)
    }
}

/// One reply of the relay: its code and its lines' text.
public struct SMTPReply: Sendable, Equatable {
    public var code: Int
    public var lines: [String]

    public var text: String { lines.joined(separator: " ") }
    var isPositive: Bool { (200..<400).contains(code) }
}

/// Sends mail to one relay over SMTP (RFC 5321): connect, EHLO, STARTTLS and EHLO again when
/// asked, AUTH PLAIN when credentials are set, then MAIL, RCPT, DATA per mail, and QUIT. The
/// socket's I/O runs on the event loops; nothing blocks.
public struct SMTPClient: Sendable {
    public let settings: SMTPSettings
    let group: any EventLoopGroup
    let tls: NIOSSLContext?

    public init(settings: SMTPSettings, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.settings = settings
        self.group = group
        if settings.security == .none {
            tls = nil
        } else {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let file = settings.certificateAuthorityFile { configuration.trustRoots = .file(file) }
            tls = try NIOSSLContext(configuration: configuration)
        }
    }

    /// Delivers `message` (already rendered) from `sender` to `recipients`; throws `SMTPError`.
    public func send(_ message: [UInt8], from sender: String, to recipients: [String], logger: Logger) async throws {
        if let failure = try await send([Envelope(message: message, sender: sender, recipients: recipients)], logger: logger).first ?? nil {
            throw failure
        }
    }

    /// One mail for `send(_:logger:)`.
    public struct Envelope: Sendable {
        public var message: [UInt8]
        public var sender: String
        public var recipients: [String]

        public init(message: [UInt8], sender: String, recipients: [String]) {
            self.message = message
            self.sender = sender
            self.recipients = recipients
        }
    }

    /// Delivers several mails over one connection, one SMTP transaction each (RSET after a mail
    /// the relay refused), and answers each mail's failure (nil: the relay took it). When the
    /// session itself fails (no connection, TLS, credentials, a dropped line), that failure is
    /// every remaining mail's.
    public func send(_ mails: [Envelope], logger: Logger) async throws -> [SMTPError?] {
        var outcomes = [SMTPError?](repeating: nil, count: mails.count)
        var pending: [Int] = []
        for (index, mail) in mails.enumerated() {
            if let bad = ([mail.sender] + mail.recipients).first(where: { !MailMessage.isPlainAddress($0) }) {
                outcomes[index] = SMTPError(kind: .permanent, code: nil, stage: "message", message: "not a plain address: \(bad)")
            } else {
                pending.append(index)
            }
        }
        guard !pending.isEmpty else { return outcomes }
        let session: SMTPSession
        do {
            session = try await connect()
            try await session.open()
        } catch {
            let failure = error as? SMTPError ?? SMTPError(kind: .transient, code: nil, stage: "connect", message: "\(error)")
            for index in pending { outcomes[index] = failure }
            return outcomes
        }
        var sessionFailure: SMTPError?
        for index in pending {
            if let sessionFailure {
                outcomes[index] = sessionFailure
                continue
            }
            do {
                try await session.transact(mails[index].message, from: mails[index].sender, to: mails[index].recipients)
            } catch let failure as SMTPError {
                outcomes[index] = failure
                // A reply to this mail (4xx, 5xx) leaves the session usable after RSET; a lost
                // connection, a timeout or a 421 (the relay closing) ends it for the rest.
                if failure.code == nil || failure.code == 421 {
                    sessionFailure = failure
                } else if (try? await session.command("RSET", at: "rset"))?.isPositive != true {
                    sessionFailure = SMTPError(kind: .transient, code: nil, stage: "rset", message: "the relay did not accept RSET")
                }
            }
        }
        if sessionFailure == nil { await session.quit() } else { await session.close() }
        logger.debug("mail handed to the relay", metadata: ["smtp.host": "\(settings.host)", "smtp.mails": "\(pending.count)",
                                                           "smtp.failed": "\(outcomes.compactMap { $0 }.count)"])
        return outcomes
    }

    func connect() async throws -> SMTPSession {
        let replies = SMTPReplyHandler(timeout: settings.timeout)
        let tls = self.tls
        let settings = self.settings
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(settings.timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if settings.security == .tls, let tls {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: settings.host))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                    try channel.pipeline.syncOperations.addHandler(replies)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: settings.host, port: settings.port).get()
        } catch {
            throw SMTPError(kind: .transient, code: nil, stage: "connect", message: "\(settings.host):\(settings.port): \(error)")
        }
        return SMTPSession(channel: channel, replies: replies, settings: settings, tls: tls)
    }
}

/// One SMTP conversation on a connected channel.
struct SMTPSession: Sendable {
    let channel: any Channel
    let replies: SMTPReplyHandler
    let settings: SMTPSettings
    let tls: NIOSSLContext?

    /// The greeting, EHLO, STARTTLS and EHLO again when asked, AUTH when credentials are set.
    func open() async throws {
        try expect(await reply(at: "greeting"), at: "greeting", relayWide: true)
        var features = try await hello()
        if settings.security == .startTLS {
            guard features.contains("STARTTLS") else {
                throw SMTPError(kind: .transient, code: nil, stage: "starttls", message: "the relay does not offer STARTTLS")
            }
            try expect(await command("STARTTLS", at: "starttls"), at: "starttls", relayWide: true)
            guard let tls else { throw SMTPError(kind: .transient, code: nil, stage: "starttls", message: "no TLS context") }
            let host = settings.host
            do {
                try await channel.eventLoop.flatSubmit {
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: host), position: .first)
                    }
                }.get()
            } catch {
                throw SMTPError(kind: .transient, code: nil, stage: "starttls", message: "\(error)")
            }
            do {
                features = try await hello()
            } catch var error as SMTPError {
                // The handshake runs under this EHLO: its failure (an untrusted certificate, a
                // host name that does not match) belongs to STARTTLS.
                error.stage = "starttls"
                throw error
            }
        }
        if let user = settings.username, let password = settings.password {
            guard features.contains(where: { $0.hasPrefix("AUTH") && $0.contains("PLAIN") }) else {
                throw SMTPError(kind: .transient, code: nil, stage: "auth", message: "the relay does not offer AUTH PLAIN")
            }
            let token = Data(Array("\0\(user)\0\(password)".utf8)).base64EncodedString()
            try expect(await command("AUTH PLAIN \(token)", at: "auth"), at: "auth", relayWide: true)
        }
    }

    /// One mail: MAIL, RCPT, DATA.
    func transact(_ message: [UInt8], from sender: String, to recipients: [String]) async throws {
        try expect(await command("MAIL FROM:<\(sender)>", at: "mail"), at: "mail")
        for recipient in recipients {
            try expect(await command("RCPT TO:<\(recipient)>", at: "rcpt"), at: "rcpt")
        }
        let go = try await command("DATA", at: "data")
        guard go.code == 354 else { throw SMTPError.from(go, at: "data") }
        try await write(Self.dotStuffed(message))
        try expect(await reply(at: "data"), at: "data")
    }

    /// EHLO, answered with the relay's extensions (upper-cased keywords and their parameters).
    func hello() async throws -> [String] {
        let answer = try await command("EHLO \(settings.heloName)", at: "ehlo")
        try expect(answer, at: "ehlo", relayWide: true)
        return answer.lines.dropFirst().map { $0.uppercased() }
    }

    func quit() async {
        _ = try? await command("QUIT", at: "quit")
        await close()
    }

    func close() async {
        try? await channel.close()
    }

    func expect(_ reply: SMTPReply, at stage: String, relayWide: Bool = false) throws {
        guard reply.isPositive else { throw SMTPError.from(reply, at: stage, relayWide: relayWide) }
    }

    func command(_ line: String, at stage: String) async throws -> SMTPReply {
        try await write(Array((line + "\r\n").utf8))
        return try await reply(at: stage)
    }

    func write(_ bytes: [UInt8]) async throws {
        do {
            try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
        } catch {
            throw SMTPError(kind: .transient, code: nil, stage: "write", message: "\(error)")
        }
    }

    func reply(at stage: String) async throws -> SMTPReply {
        do {
            return try await channel.eventLoop.flatSubmit { replies.next(on: channel.eventLoop) }.get()
        } catch let error as SMTPError {
            throw error
        } catch {
            throw SMTPError(kind: .transient, code: nil, stage: stage, message: "\(error)")
        }
    }

    /// The message for DATA: CRLF line endings, a `.` doubled at the start of a line (RFC 5321
    /// 4.5.2), and the final `.` line.
    static func dotStuffed(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 5)
        var atLineStart = true
        var previous: UInt8 = 0
        for byte in message {
            if byte == UInt8(ascii: "\n"), previous != UInt8(ascii: "\r") { out.append(UInt8(ascii: "\r")) }
            if atLineStart, byte == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
            out.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
            previous = byte
        }
        if !atLineStart { out += Array("\r\n".utf8) }
        out += Array(".\r\n".utf8)
        return out
    }
}

/// Splits the relay's bytes into replies: lines `250-...` continue one, `250 ...` ends it.
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply
    /// RFC 5321 4.5.3.1.5: 512 octets a reply line; some relays send longer ones.
    static let maximumLine = 4096
    static let maximumLines = 100

    var pending: [String] = []

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let end = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.maximumLine { throw SMTPError(kind: .transient, code: nil, stage: "reply", message: "reply line too long") }
            return .needMoreData
        }
        let length = end - buffer.readerIndex
        var line = buffer.readString(length: length) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        let bytes = Array(line.utf8)
        guard bytes.count >= 3, let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)), (200...599).contains(code) else {
            throw SMTPError(kind: .transient, code: nil, stage: "reply", message: "not an SMTP reply: \(line.prefix(80))")
        }
        let text = bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : ""
        pending.append(text)
        if bytes.count > 3, bytes[3] == UInt8(ascii: "-") {
            guard pending.count < Self.maximumLines else { throw SMTPError(kind: .transient, code: nil, stage: "reply", message: "reply too long") }
            return .continue
        }
        context.fireChannelRead(wrapInboundOut(SMTPReply(code: code, lines: pending)))
        pending = []
        return .continue
    }
}

/// Hands replies, in order, to whoever waits for the next one; fails the waiters when the
/// connection ends or a reply does not come within the timeout. Used on its event loop only.
final class SMTPReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = SMTPReply

    let timeout: Duration
    private var arrived: CircularBuffer<SMTPReply> = []
    private var waiting: CircularBuffer<(promise: EventLoopPromise<SMTPReply>, timer: Scheduled<Void>)> = []
    private var failure: (any Error)?

    init(timeout: Duration) {
        self.timeout = timeout
    }

    func next(on loop: any EventLoop) -> EventLoopFuture<SMTPReply> {
        if let reply = arrived.popFirst() { return loop.makeSucceededFuture(reply) }
        if let failure { return loop.makeFailedFuture(failure) }
        let promise = loop.makePromise(of: SMTPReply.self)
        let timeout = self.timeout
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) { [weak self] () -> Void in
            guard let self else { return }
            self.fail(SMTPError(kind: .transient, code: nil, stage: "reply", message: "no reply within \(timeout)"))
        }
        waiting.append((promise: promise, timer: timer))
        return promise.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        if let waiter = waiting.popFirst() {
            waiter.timer.cancel()
            waiter.promise.succeed(reply)
        } else {
            arrived.append(reply)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SMTPError(kind: .transient, code: nil, stage: "reply", message: "the relay closed the connection"))
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        if failure == nil { failure = error }
        while let waiter = waiting.popFirst() {
            waiter.timer.cancel()
            waiter.promise.fail(error)
        }
    }
}
