import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
@testable import Messaging

/// The SMTP client against the dev mail catcher `make test` starts: a real SMTP conversation,
/// the mail read back through the catcher's API, and the relay's refusals as the catcher's
/// faults produce them. Each test uses addresses of its own, so faults and reads never cross.
@Suite(.enabled(if: TestInfrastructure.mailAvailable))
struct MailDeliveryIntegrationTests {
    let client: SMTPClient
    let api = TestInfrastructure.mailURL ?? ""

    init() throws {
        client = try SMTPClient(settings: SMTPSettings(url: TestInfrastructure.smtpURL ?? "smtp://127.0.0.1:1", heloName: "tests.marketplace.test",
                                                       timeout: .seconds(5)))
    }

    static func unique(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8).lowercased())@example.com" }

    func message(to address: String, subject: String, text: String, html: String? = nil) -> MailMessage {
        MailMessage(from: MailAddress("no-reply@marketplace.test", name: "Marketplace"), to: MailAddress(address, name: "Zoë Buyer"),
                    subject: subject, text: text, html: html, messageId: "\(UUID().uuidString.lowercased())@marketplace.test", date: Date(),
                    headers: [("List-Unsubscribe", "<https://marketplace.test/unsubscribe/abc>"),
                              ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")])
    }

    func send(_ message: MailMessage) async throws {
        try await client.send(try message.rendered(), from: message.from.address, to: [message.to.address], logger: TestInfrastructure.logger)
    }

    func call(_ method: HTTPMethod, _ path: String, body: String? = nil) async throws -> (status: UInt, body: String) {
        var request = HTTPClientRequest(url: api + path)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 10 << 20)
        return (response.status.code, String(buffer: bytes))
    }

    /// The catcher's mails to `address`, newest first.
    func mails(to address: String) async throws -> [[String: Any]] {
        let query = "to:\(address)".addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        let found = try await call(.GET, "/api/v1/search?query=\(query)")
        let object = try JSONSerialization.jsonObject(with: Data(found.body.utf8)) as? [String: Any]
        return object?["messages"] as? [[String: Any]] ?? []
    }

    func detail(_ id: String) async throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(try await call(.GET, "/api/v1/message/\(id)").body.utf8)) as? [String: Any] ?? [:]
    }

    func faults(_ json: String) async throws {
        #expect(try await call(.PUT, "/api/dev/faults", body: json).status == 200)
    }

    @Test func aMailArrivesWithItsPartsHeadersAndEncodedWordsIntact() async throws {
        let to = Self.unique("zoe")
        let text = "Hello Zoë,\n.a line that starts with a dot\n\nYour order is on its way."
        try await send(message(to: to, subject: "Votre commande a été expédiée 📦", text: text, html: "<p>Hello Zoë,</p>"))
        let found = try await mails(to: to)
        try #require(found.count == 1)
        let mail = try await detail(try #require(found[0]["ID"] as? String))
        #expect(mail["Subject"] as? String == "Votre commande a été expédiée 📦")
        #expect((mail["Text"] as? String)?.replacingOccurrences(of: "\r\n", with: "\n") == text, "the dotted line came through whole")
        #expect(mail["HTML"] as? String == "<p>Hello Zoë,</p>")
        #expect((mail["From"] as? [String: String]) == ["Name": "Marketplace", "Address": "no-reply@marketplace.test"])
        #expect((mail["To"] as? [[String: String]]) == [["Name": "Zoë Buyer", "Address": to]])
        let headers = try JSONSerialization.jsonObject(with: Data(try await call(.GET, "/api/v1/message/\(found[0]["ID"]!)/headers").body.utf8))
            as? [String: [String]]
        #expect(headers?["List-Unsubscribe"] == ["<https://marketplace.test/unsubscribe/abc>"])
        #expect(headers?["List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"])
    }

    @Test func aRefusalFor4xxIsTransientAndFor5xxPermanentAtItsStage() async throws {
        let slow = Self.unique("slow")
        let gone = Self.unique("gone")
        try await faults(#"{"faults": [{"stage": "rcpt", "code": 451, "match": "\#(slow)", "times": 1}, {"stage": "data", "code": 554, "match": "\#(gone)"}]}"#)
        await #expect(throws: SMTPError(kind: .transient, code: 451, stage: "rcpt", message: "4.0.0 try again later")) {
            try await send(message(to: slow, subject: "first try", text: "x"))
        }
        try await send(message(to: slow, subject: "second try", text: "x"))
        await #expect(throws: SMTPError(kind: .permanent, code: 554, stage: "data", message: "5.0.0 rejected")) {
            try await send(message(to: gone, subject: "refused", text: "x"))
        }
        try await faults(#"{"faults": []}"#)
        #expect(try await mails(to: slow).map { $0["Subject"] as? String } == ["second try"])
        #expect(try await mails(to: gone).isEmpty)
    }

    @Test func noRelayListeningIsTransient() async throws {
        let closed = try SMTPClient(settings: SMTPSettings(url: "smtp://127.0.0.1:1", timeout: .seconds(2)))
        let error = await #expect(throws: SMTPError.self) {
            try await closed.send(try message(to: Self.unique("x"), subject: "s", text: "t").rendered(), from: "no-reply@marketplace.test",
                                  to: ["x@example.com"], logger: TestInfrastructure.logger)
        }
        #expect(error?.kind == .transient && error?.stage == "connect")
    }

    @Test func aRelayThatDoesNotOfferSTARTTLSIsNeverUsedInPlaintextWhenTLSWasAsked() async throws {
        let plain = try SMTPSettings(url: TestInfrastructure.smtpURL ?? "")
        let asked = try SMTPClient(settings: SMTPSettings(url: "smtp+starttls://\(plain.host):\(plain.port)", timeout: .seconds(5)))
        let to = Self.unique("tls")
        let error = await #expect(throws: SMTPError.self) {
            try await asked.send(try message(to: to, subject: "s", text: "t").rendered(), from: "no-reply@marketplace.test", to: [to],
                                 logger: TestInfrastructure.logger)
        }
        #expect(error?.stage == "starttls" && error?.kind == .transient)
        #expect(try await mails(to: to).isEmpty)
    }
}

/// The SMTP client against a relay that wants TLS and credentials: the dev mail catcher started
/// here with a throwaway certificate (`--tls-self-signed`, `--auth`), as a real relay would be set up.
final class TLSRelay: @unchecked Sendable {
    let directory: URL
    let catcher: Process
    let smtpPort: Int
    let api: String
    let certificate: String

    init(implicitTLS: Bool = false) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-\(UUID().uuidString.prefix(8))")
        certificate = directory.appendingPathComponent("cert.pem").path
        let address = directory.appendingPathComponent("mail.address")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/dev/mailcatcher.py").path
        catcher = Process()
        catcher.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        catcher.arguments = ["python3", script, "--smtp-port", "0", "--http-port", "0", "--address-file", address.path,
                             "--tls-self-signed", directory.path, "--auth", "mailer:s3cret pass"] + (implicitTLS ? ["--implicit-tls"] : [])
        // Its output goes nowhere: a relay that outlived the test must not hold the runner's pipes open.
        catcher.standardOutput = FileHandle.nullDevice
        catcher.standardError = FileHandle.nullDevice
        try catcher.run()
        var ports: [String: Any]?
        for _ in 0..<400 where ports == nil && catcher.isRunning {
            ports = (try? Data(contentsOf: address)).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            if ports == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let smtp = (ports?["smtp"] as? NSNumber)?.intValue, let http = (ports?["http"] as? NSNumber)?.intValue else {
            kill(catcher.processIdentifier, SIGKILL)
            throw SMTPError(kind: .transient, code: nil, stage: "connect", message: "the TLS relay did not start")
        }
        smtpPort = smtp
        api = "http://127.0.0.1:\(http)"
    }

    /// Stops the relay (SIGKILL: it keeps nothing; `Process.terminate` was seen not to reach it
    /// from here) and removes its certificate.
    func stop() {
        kill(catcher.processIdentifier, SIGKILL)
        try? FileManager.default.removeItem(at: directory)
    }

    func send(_ url: String, to: String, trusting: Bool = true) async throws {
        let client = try SMTPClient(settings: SMTPSettings(url: url, heloName: "tests.marketplace.test", timeout: .seconds(5),
                                                           certificateAuthorityFile: trusting ? certificate : nil))
        let message = MailMessage(from: MailAddress("no-reply@marketplace.test"), to: MailAddress(to), subject: "over TLS", text: "secret",
                                  messageId: "\(UUID().uuidString.lowercased())@marketplace.test", date: Date())
        try await client.send(try message.rendered(), from: message.from.address, to: [to], logger: TestInfrastructure.logger)
    }

    func received() async throws -> Int {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: api + "/api/v1/messages"), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        return ((try JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8)) as? [String: Any])?["total"] as? NSNumber)?.intValue ?? -1
    }

    /// Runs `body` with a fresh relay, stopped after.
    static func with(implicitTLS: Bool = false, _ body: (TLSRelay) async throws -> Void) async throws {
        let relay = try await TLSRelay(implicitTLS: implicitTLS)
        defer { relay.stop() }
        try await body(relay)
    }
}

@Suite(.enabled(if: TestInfrastructure.mailAvailable))
struct MailRelayTLSIntegrationTests {
    @Test func startTLSThenAuthPlainDeliversTheMail() async throws {
        try await TLSRelay.with { (relay: TLSRelay) async throws in
            try await relay.send("smtp+starttls://mailer:s3cret%20pass@localhost:\(relay.smtpPort)", to: "ann@example.com")
            #expect(try await relay.received() == 1)
        }
    }

    @Test func implicitTLSThenAuthDeliversTheMail() async throws {
        try await TLSRelay.with(implicitTLS: true) { (relay: TLSRelay) async throws in
            try await relay.send("smtps://mailer:s3cret%20pass@localhost:\(relay.smtpPort)", to: "ann@example.com")
            #expect(try await relay.received() == 1)
        }
    }

    @Test func wrongCredentialsAreTransientAtAuthAndSendNothing() async throws {
        try await TLSRelay.with { (relay: TLSRelay) async throws in
            let error = await #expect(throws: SMTPError.self) {
                try await relay.send("smtp+starttls://mailer:wrong@localhost:\(relay.smtpPort)", to: "ann@example.com")
            }
            #expect(error?.stage == "auth" && error?.code == 535 && error?.kind == .transient)
            #expect(try await relay.received() == 0)
        }
    }

    @Test func aCertificateNotTrustedIsRefusedBeforeAnyCredentialIsSent() async throws {
        try await TLSRelay.with { (relay: TLSRelay) async throws in
            let error = await #expect(throws: SMTPError.self) {
                try await relay.send("smtp+starttls://mailer:s3cret%20pass@localhost:\(relay.smtpPort)", to: "ann@example.com", trusting: false)
            }
            #expect(error?.kind == .transient && error?.stage == "starttls", "\(String(describing: error))")
            #expect(try await relay.received() == 0)
        }
    }

    @Test func withoutSTARTTLSTheRelayTakesNoMail() async throws {
        try await TLSRelay.with { (relay: TLSRelay) async throws in
            let error = await #expect(throws: SMTPError.self) {
                try await relay.send("smtp://localhost:\(relay.smtpPort)", to: "ann@example.com")
            }
            #expect(error?.stage == "mail" && error?.code == 530)
            #expect(try await relay.received() == 0)
        }
    }
}
