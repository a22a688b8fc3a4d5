import Foundation

/// A notification's words, written once for both parts of its mail. The subject and paragraphs
/// hold `{{name}}` for a value and `{{link:name|Label}}` for a link; `render` writes the text part
/// with values as they are and links as `Label: URL`, and the HTML part with every value escaped
/// and links as anchors to checked `https`/`http` URLs. Nothing a user typed can become markup.
struct MailTemplate: Sendable, Equatable {
    var subject: String
    var paragraphs: [String]

    /// The names the template asks for: values and links.
    var placeholders: (values: Set<String>, links: Set<String>) {
        var values: Set<String> = [], links: Set<String> = []
        for piece in ([subject] + paragraphs).flatMap(Self.pieces) {
            switch piece {
            case .value(let name): values.insert(name)
            case .link(let name, _): links.insert(name)
            case .literal: break
            }
        }
        return (values, links)
    }

    enum Invalid: Error, Equatable {
        case missingValue(String)
        case missingLink(String)
        /// A link that is not an absolute http(s) URL (`javascript:`, a relative path).
        case badLink(String)
        case linkInSubject(String)
    }

    enum Piece: Equatable {
        case literal(String)
        case value(String)
        case link(name: String, label: String)
    }

    static func pieces(_ source: String) -> [Piece] {
        var pieces: [Piece] = []
        var rest = Substring(source)
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            if open.lowerBound > rest.startIndex { pieces.append(.literal(String(rest[..<open.lowerBound]))) }
            let inner = rest[open.upperBound..<close.lowerBound]
            if inner.hasPrefix("link:") {
                let spec = inner.dropFirst(5)
                let parts = spec.split(separator: "|", maxSplits: 1).map(String.init)
                pieces.append(.link(name: parts[0], label: parts.count > 1 ? parts[1] : parts[0]))
            } else {
                pieces.append(.value(String(inner)))
            }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { pieces.append(.literal(String(rest))) }
        return pieces
    }

    struct Rendered: Sendable, Equatable {
        var subject: String
        var text: String
        var html: String
    }

    /// The mail's subject and parts. `unsubscribe`, for kinds that may be turned off, adds the
    /// footer that says how (the same URL goes into `List-Unsubscribe`).
    func render(displayName: String, values: [String: String], links: [String: String], unsubscribe: String?) throws -> Rendered {
        var subjectText = ""
        for piece in Self.pieces(subject) {
            switch piece {
            case .literal(let text): subjectText += text
            case .value(let name):
                // A header holds one line: whatever a value holds, it stays on it.
                guard let value = values[name] else { throw Invalid.missingValue(name) }
                subjectText += value.components(separatedBy: .newlines).joined(separator: " ")
            case .link(let name, _): throw Invalid.linkInSubject(name)
            }
        }
        var textParagraphs = ["Hello \(displayName),"]
        var htmlParagraphs = ["<p>Hello \(Self.escape(displayName)),</p>"]
        for paragraph in paragraphs {
            var text = "", html = ""
            for piece in Self.pieces(paragraph) {
                switch piece {
                case .literal(let literal):
                    text += literal
                    html += Self.escape(literal)
                case .value(let name):
                    guard let value = values[name] else { throw Invalid.missingValue(name) }
                    text += value
                    html += Self.escape(value)
                case .link(let name, let label):
                    guard let url = links[name] else { throw Invalid.missingLink(name) }
                    guard Self.isWebLink(url) else { throw Invalid.badLink(name) }
                    text += "\(label): \(url)"
                    html += "<a href=\"\(Self.escape(url))\">\(Self.escape(label))</a>"
                }
            }
            textParagraphs.append(text)
            htmlParagraphs.append("<p>\(html)</p>")
        }
        textParagraphs.append("The marketplace team")
        htmlParagraphs.append("<p>The marketplace team</p>")
        if let unsubscribe {
            guard Self.isWebLink(unsubscribe) else { throw Invalid.badLink("unsubscribe") }
            textParagraphs.append("You can turn these mails off: \(unsubscribe)")
            htmlParagraphs.append("<p style=\"color:#666;font-size:12px\"><a href=\"\(Self.escape(unsubscribe))\">Turn these mails off</a></p>")
        }
        let html = "<!doctype html><html><body style=\"font-family:sans-serif\">" + htmlParagraphs.joined(separator: "\n") + "</body></html>"
        return Rendered(subject: subjectText, text: textParagraphs.joined(separator: "\n\n") + "\n", html: html)
    }

    /// The in-app notification's line: the first paragraph as text, links by their label only.
    func summary(values: [String: String]) throws -> String {
        var line = ""
        for piece in Self.pieces(paragraphs.first ?? "") {
            switch piece {
            case .literal(let text): line += text
            case .value(let name):
                guard let value = values[name] else { throw Invalid.missingValue(name) }
                line += value
            case .link(_, let label): line += label
            }
        }
        return line
    }

    static func isWebLink(_ url: String) -> Bool {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "https" || scheme == "http", let host = components.host, !host.isEmpty else { return false }
        return !url.contains(where: { $0.isWhitespace || $0.isNewline })
    }

    /// HTML text and attribute escaping: `& < > " '`.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}

/// Every kind of notification the suite sends: the event that causes it, who gets it, whether
/// its mail may be turned off (security mails may not), and its words.
struct NotificationKind: Sendable, Equatable {
    var id: String
    /// The event type it answers (`Shared/Contracts`, `EventTypes`).
    var trigger: String
    /// Who it goes to, as the event names them.
    var recipient: String
    var canTurnOff: Bool
    var template: MailTemplate

    /// The kind named `id`.
    static func named(_ id: String) -> NotificationKind? { byId[id] }
    private static let byId = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })

    static let all: [NotificationKind] = [
        NotificationKind(id: "account.email_verification", trigger: "marketplace.identity.notification.requested.v1 (verification)",
                         recipient: "the user", canTurnOff: false, template: MailTemplate(
                            subject: "Confirm your email address",
                            paragraphs: ["Please confirm that this is your email address: {{link:verify|Confirm my address}}",
                                         "The link works for {{validFor}}. If you did not create an account, ignore this mail."])),
        NotificationKind(id: "account.password_reset", trigger: "marketplace.identity.notification.requested.v1 (password_reset)",
                         recipient: "the user", canTurnOff: false, template: MailTemplate(
                            subject: "Reset your password",
                            paragraphs: ["Someone asked to reset your password. {{link:reset|Choose a new password}}",
                                         "The link works for {{validFor}}. If it was not you, ignore this mail: your password stays as it is."])),
        NotificationKind(id: "account.password_changed", trigger: "marketplace.identity.notification.requested.v1 (password_changed)",
                         recipient: "the user", canTurnOff: false, template: MailTemplate(
                            subject: "Your password was changed",
                            paragraphs: ["Your password was changed on {{changedAt}} and your other sessions were signed out.",
                                         "If that was not you, reset your password now: {{link:reset|Reset my password}}"])),
        NotificationKind(id: "message.received", trigger: "messaging: a new message in a conversation",
                         recipient: "the other participant", canTurnOff: true, template: MailTemplate(
                            subject: "New message from {{senderName}} about {{subjectTitle}}",
                            paragraphs: ["{{senderName}} wrote to you about {{subjectTitle}}.",
                                         "{{link:conversation|Read and reply}}"])),
        NotificationKind(id: "listing.approved", trigger: "marketplace.listings.listing.moderated.v1 (approved)",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your listing \"{{listingTitle}}\" is live",
                            paragraphs: ["Our moderators approved \"{{listingTitle}}\"; buyers can find it now.", "{{link:listing|See the listing}}"])),
        NotificationKind(id: "listing.rejected", trigger: "marketplace.listings.listing.moderated.v1 (rejected)",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your listing \"{{listingTitle}}\" needs changes",
                            paragraphs: ["Our moderators could not publish \"{{listingTitle}}\": {{reason}}",
                                         "Edit it and send it again: {{link:listing|Edit the listing}}"])),
        NotificationKind(id: "listing.removed", trigger: "marketplace.listings.listing.moderated.v1 (removed)",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your listing \"{{listingTitle}}\" was removed",
                            paragraphs: ["Our moderators removed \"{{listingTitle}}\": {{reason}}",
                                         "If you think this is a mistake, reply through the help centre: {{link:listing|See the listing}}"])),
        NotificationKind(id: "subscription.trial_ending", trigger: "marketplace.billing.subscription.trial_ending.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your trial ends on {{endsOn}}",
                            paragraphs: ["Your {{planName}} trial ends on {{endsOn}}; the first payment of {{amount}} is taken then.",
                                         "{{link:billing|Review your subscription}}"])),
        NotificationKind(id: "subscription.payment_failed", trigger: "marketplace.billing.subscription.payment_failed.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "We could not take your payment of {{amount}}",
                            paragraphs: ["Your payment of {{amount}} for {{planName}} failed. We will try again on {{nextAttemptOn}}.",
                                         "Update your card to keep your listings online: {{link:billing|Update payment method}}"])),
        NotificationKind(id: "subscription.suspended", trigger: "marketplace.billing.subscription.suspended.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your listings are hidden until payment",
                            paragraphs: ["We could not take payment for {{planName}}, so your listings are hidden from buyers.",
                                         "They return as soon as the payment succeeds: {{link:billing|Pay now}}"])),
        NotificationKind(id: "subscription.reactivated", trigger: "marketplace.billing.subscription.reactivated.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your listings are back",
                            paragraphs: ["Thank you: your {{planName}} subscription is active again and your listings are visible."])),
        NotificationKind(id: "subscription.canceled", trigger: "marketplace.billing.subscription.canceled.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Your {{planName}} subscription has ended",
                            paragraphs: ["Your {{planName}} subscription has ended and your listings are no longer shown.",
                                         "You can subscribe again at any time: {{link:billing|See the plans}}"])),
        NotificationKind(id: "order.placed", trigger: "marketplace.orders.order.placed.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "New order for {{listingTitle}}",
                            paragraphs: ["{{buyerName}} ordered {{quantity}} × {{listingTitle}} ({{total}}). You can ship once it is paid.",
                                         "{{link:order|See the order}}"])),
        NotificationKind(id: "order.paid", trigger: "marketplace.orders.order.paid.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Order for {{listingTitle}} paid: please ship",
                            paragraphs: ["The order for {{listingTitle}} is paid; the money is held until the buyer receives it.",
                                         "{{link:order|Ship the order}}"])),
        NotificationKind(id: "order.shipped", trigger: "marketplace.orders.order.shipped.v1",
                         recipient: "the buyer", canTurnOff: true, template: MailTemplate(
                            subject: "{{listingTitle}} is on its way",
                            paragraphs: ["{{vendorName}} shipped your order with {{carrier}}, tracking number {{trackingNumber}}.",
                                         "{{link:order|Follow your order}}"])),
        NotificationKind(id: "order.delivered", trigger: "marketplace.orders.order.delivered.v1",
                         recipient: "the buyer", canTurnOff: true, template: MailTemplate(
                            subject: "{{listingTitle}} was delivered",
                            paragraphs: ["Your order was marked delivered. Please confirm you received it, or open a dispute, by {{receiptAssumedOn}}.",
                                         "{{link:order|Confirm receipt}}"])),
        NotificationKind(id: "order.canceled", trigger: "marketplace.orders.order.canceled.v1",
                         recipient: "the buyer and the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Order for {{listingTitle}} canceled",
                            paragraphs: ["The order for {{listingTitle}} was canceled ({{reason}}). {{refundNote}}", "{{link:order|See the order}}"])),
        NotificationKind(id: "order.received", trigger: "marketplace.orders.order.received.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "{{listingTitle}} received: {{vendorAmount}} is yours",
                            paragraphs: ["The buyer received the order. {{vendorAmount}} (after the {{commission}} commission) joins your balance and is paid out with the next daily payout.",
                                         "{{link:balance|See your balance}}"])),
        NotificationKind(id: "payment.refunded", trigger: "marketplace.billing.payment.refunded.v1",
                         recipient: "the buyer", canTurnOff: true, template: MailTemplate(
                            subject: "{{amount}} refunded for {{listingTitle}}",
                            paragraphs: ["We refunded {{amount}} to your card for {{listingTitle}}. Banks take 5 to 10 days to show it.",
                                         "{{link:order|See the order}}"])),
        NotificationKind(id: "dispute.opened", trigger: "marketplace.orders.dispute.opened.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "The buyer disputes the order for {{listingTitle}}",
                            paragraphs: ["{{buyerName}} opened a dispute ({{reason}}). The payment is held until a moderator decides; please add your evidence.",
                                         "{{link:dispute|See the dispute}}"])),
        NotificationKind(id: "dispute.withdrawn", trigger: "marketplace.orders.dispute.withdrawn.v1",
                         recipient: "the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Dispute about {{listingTitle}} withdrawn",
                            paragraphs: ["The buyer withdrew the dispute; the order is delivered again and the payment no longer held for it.",
                                         "{{link:order|See the order}}"])),
        NotificationKind(id: "dispute.escalated", trigger: "marketplace.orders.dispute.escalated.v1",
                         recipient: "the admins", canTurnOff: true, template: MailTemplate(
                            subject: "Dispute about {{listingTitle}} unresolved for 14 days",
                            paragraphs: ["A dispute opened on {{openedOn}} has had no decision; it is now for an admin to decide.",
                                         "{{link:desk|Open the dispute desk}}"])),
        NotificationKind(id: "dispute.resolved", trigger: "marketplace.orders.dispute.resolved.v1",
                         recipient: "the buyer and the vendor", canTurnOff: true, template: MailTemplate(
                            subject: "Dispute about {{listingTitle}} decided",
                            paragraphs: ["The dispute is decided: {{decision}}", "{{link:dispute|See the decision}}"])),
    ]
}
