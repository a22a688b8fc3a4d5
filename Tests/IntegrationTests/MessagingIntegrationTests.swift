import Contracts
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Messaging
import NIOCore
import Platform
import PostgresNIO
import Testing

/// Messaging's routes in process against a real Postgres (tokens signed here), fed by its real
/// inbox handlers; mail through the real queue to the dev mail catcher.
@Suite(.enabled(if: TestInfrastructure.available), .serialized)
struct MessagingIntegrationTests {
    static let key = Curve25519.Signing.PrivateKey()
    let logger = TestInfrastructure.logger

    struct People {
        let buyer = UUID.v7(), vendor = UUID.v7(), stranger = UUID.v7(), moderator = UUID.v7(), admin = UUID.v7()
    }

    /// A bearer token for `user` with `roles` (staff with a second factor).
    static func bearer(_ user: UUID, _ roles: [String], verified: Bool = true) throws -> String {
        let settings = try ServiceSettings(serviceName: MessagingService.name, defaultPort: MessagingService.defaultPort,
                                           reader: ConfigReader(values: ["DATABASE_URL": "postgres://x@127.0.0.1/x"]))
        let now = Int64(Date().timeIntervalSince1970)
        let claims = AccessTokenClaims(iss: settings.tokenIssuer, aud: settings.tokenAudience, sub: user.lowercased, roles: roles, iat: now,
                                       nbf: now, exp: now + 600, jti: UUID().uuidString, emailVerified: verified,
                                       amr: roles.contains("moderator") || roles.contains("admin") ? ["pwd", "otp"] : ["pwd"])
        return "Bearer " + (try AccessTokenSigner(keyId: "k1", privateKey: key).sign(claims))
    }

    func withMessaging(smtp: String? = nil, _ body: @Sendable (any TestClientProtocol, PostgresClient, Inbox, MessagingService) async throws -> Void) async throws {
        let config = ["SMTP_URL": smtp ?? TestInfrastructure.smtpURL ?? "smtp://127.0.0.1:1"]
        try await InProcess.withService(MessagingService.self, config: config,
                                        keys: { _ in StaticKeySource(["k1": Self.key.publicKey]) }) { client, postgres async throws in
            let values = config.merging(["DATABASE_URL": TestInfrastructure.databaseURL!]) { $1 }
            let settings = try ServiceSettings(serviceName: MessagingService.name, defaultPort: MessagingService.defaultPort, reader: ConfigReader(values: values))
            let service = try MessagingService(dependencies: ServiceDependencies(settings: settings, config: ConfigReader(values: values),
                                                                                 postgres: postgres, logger: logger))
            let schema = try await postgres.query("SELECT current_schema()").collect().first?.decode(String.self) ?? "public"
            try await body(client, postgres, Inbox(client: postgres, handlers: service.eventHandlers, service: schema, clock: BusinessClock()), service)
        }
    }

    func deliver<Payload>(_ inbox: Inbox, _ contract: EventContract<Payload>, _ payload: Payload, id: String = UUID().uuidString.lowercased()) async throws {
        var event = try CloudEvent.json(type: contract.type, source: "/marketplace/tests", subject: contract.subject(for: payload), payload: payload, time: Date())
        event.id = id
        _ = try await inbox.apply(event, topic: contract.topic, logger: logger)
    }

    /// The people, with names, verified addresses, and a published listing of the vendor's.
    func seed(_ inbox: Inbox, _ people: People, listing: UUID) async throws {
        for (id, name, roles) in [(people.buyer, "Bea Buyer", ["buyer"]), (people.vendor, "Kennel Aurora", ["vendor"]),
                                  (people.stranger, "Sam Stranger", ["buyer"]), (people.moderator, "Mo Derator", ["moderator"]),
                                  (people.admin, "Ada Admin", ["admin"])] {
            try await deliver(inbox, UserEvents.registered, UserRegisteredV1(userId: id, displayName: name, roles: roles, status: "active", registeredAt: Date()))
            try await deliver(inbox, NotificationEvents.emailChanged,
                              UserEmailChangedV1(userId: id, email: "\(id.lowercased.suffix(12))@example.com", verified: true, changedAt: Date()))
        }
        try await deliver(inbox, ListingEvents.published, ListingV1(listingId: listing, vendorId: people.vendor, category: "dogs", title: "Collie pups",
                                                                    status: "published", hiddenReason: nil, published: true, priceAmount: 50_000,
                                                                    currency: "GBP", quantityAvailable: 3, version: 1, changedAt: Date()))
    }

    @discardableResult
    func call(_ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, as user: UUID, _ roles: [String] = ["buyer"],
              body: [String: Any]? = nil, expect status: HTTPResponse.Status) async throws -> [String: Any] {
        var headers: HTTPFields = [.authorization: try Self.bearer(user, roles)]
        if body != nil { headers[.contentType] = "application/json" }
        return try await client.execute(uri: uri, method: method, headers: headers, body: body.map(InProcess.json)) { response async throws in
            #expect(response.status == status, "\(method) \(uri): \(String(buffer: response.body))")
            guard response.body.readableBytes > 0 else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]) ?? [:]
        }
    }

    @Test func aConversationMasksContactDetailsUntilAPaidOrderAndCountsWhatIsUnread() async throws {
        try await withMessaging { client, _, inbox, _ async throws in
            let people = People(), listing = UUID.v7()
            try await seed(inbox, people, listing: listing)
            let opened = try await call(client, .post, "/v1/conversations", as: people.buyer,
                                        body: ["listingId": listing.lowercased, "body": "Hello! Call me on 07700 900123 please"], expect: .created)
            let id = try #require(opened["id"] as? String)
            #expect(opened["title"] as? String == "Collie pups" && (opened["otherParty"] as? [String: Any])?["displayName"] as? String == "Kennel Aurora")
            let again = try await call(client, .post, "/v1/conversations", as: people.buyer,
                                       body: ["listingId": listing.lowercased, "body": "Or mail bea at example dot com"], expect: .ok)
            #expect(again["id"] as? String == id, "one conversation per buyer and listing")

            let vendorView = try await call(client, .get, "/v1/conversations", as: people.vendor, ["vendor"], expect: .ok)
            let listed = try #require((vendorView["items"] as? [[String: Any]])?.first)
            #expect(listed["unreadCount"] as? Int == 2 && listed["contactDetailsShared"] as? Bool == false)
            var seen = try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.vendor, ["vendor"], expect: .ok)
            var bodies = (seen["items"] as? [[String: Any]] ?? []).map { $0["body"] as? String ?? "" }
            #expect(bodies == ["Or mail [contact details hidden]", "Hello! Call me on [contact details hidden] please"], "newest first, masked")
            let own = try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.buyer, expect: .ok)
            #expect((own["items"] as? [[String: Any]])?.last?["body"] as? String == "Hello! Call me on 07700 900123 please", "the author sees the original")

            let read = try await call(client, .post, "/v1/conversations/\(id)/read", as: people.vendor, ["vendor"], expect: .ok)
            #expect(read["unreadCount"] as? Int == 0)
            try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.stranger, expect: .notFound)
            try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.moderator, ["moderator"], expect: .notFound)

            // An order between the two is paid: from now on nothing is hidden.
            let order = UUID.v7()
            try await deliver(inbox, OrderEvents.placed, OrderPlacedV1(orderId: order, listingId: listing, buyerId: people.buyer, quantity: 1,
                                                                       placedAt: Date(), vendorId: people.vendor))
            try await deliver(inbox, OrderEvents.paid, OrderPaidV1(orderId: order, listingId: listing, paidAt: Date(), buyerId: people.buyer,
                                                                   vendorId: people.vendor))
            seen = try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.vendor, ["vendor"], expect: .ok)
            bodies = (seen["items"] as? [[String: Any]] ?? []).map { $0["body"] as? String ?? "" }
            #expect(bodies == ["Or mail bea at example dot com", "Hello! Call me on 07700 900123 please"])

            // A conversation about the order is a second one; either party may open it.
            let aboutOrder = try await call(client, .post, "/v1/conversations", as: people.vendor, ["vendor"],
                                            body: ["orderId": order.lowercased, "body": "Shipping Tuesday."], expect: .created)
            #expect(aboutOrder["orderStatus"] as? String == "paid" && aboutOrder["id"] as? String != id)
            try await call(client, .post, "/v1/conversations", as: people.stranger, body: ["orderId": order.lowercased, "body": "hi"], expect: .notFound)
            try await call(client, .post, "/v1/conversations", as: people.vendor, ["vendor"],
                           body: ["listingId": listing.lowercased, "body": "hi"], expect: .unprocessableContent)
            try await call(client, .post, "/v1/conversations", as: people.buyer, body: ["body": ""], expect: .unprocessableContent)
        }
    }

    @Test func deletingBlockingReportingAndTheDeskWithItsAuditLog() async throws {
        try await withMessaging { client, _, inbox, _ async throws in
            let people = People(), listing = UUID.v7()
            try await seed(inbox, people, listing: listing)
            let opened = try await call(client, .post, "/v1/conversations", as: people.buyer, body: ["listingId": listing.lowercased, "body": "First"],
                                        expect: .created)
            let id = try #require(opened["id"] as? String)
            let rude = try await call(client, .post, "/v1/conversations/\(id)/messages", as: people.buyer, body: ["body": "Something rude"], expect: .created)
            let rudeId = try #require(rude["id"] as? String)
            let vendorReply = try await call(client, .post, "/v1/conversations/\(id)/messages", as: people.vendor, ["vendor"],
                                             body: ["body": "Please be polite"], expect: .created)

            // Soft delete: gone for the author, "deleted" for the other side, kept for the desk.
            try await call(client, .delete, "/v1/conversations/\(id)/messages/\(rudeId)", as: people.vendor, ["vendor"], expect: .forbidden)
            try await call(client, .delete, "/v1/conversations/\(id)/messages/\(rudeId)", as: people.buyer, expect: .noContent)
            try await call(client, .delete, "/v1/conversations/\(id)/messages/\(rudeId)", as: people.buyer, expect: .notFound)
            let buyerSees = try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.buyer, expect: .ok)
            #expect((buyerSees["items"] as? [[String: Any]])?.count == 2)
            let vendorSees = try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.vendor, ["vendor"], expect: .ok)
            let deleted = (vendorSees["items"] as? [[String: Any]])?.first { $0["id"] as? String == rudeId }
            #expect(deleted?["state"] as? String == "deleted" && deleted?["body"] is NSNull)

            // The vendor reports the message, twice (one report), then blocks the buyer.
            let report = try await call(client, .post, "/v1/conversations/\(id)/reports", as: people.vendor, ["vendor"],
                                        body: ["messageId": rudeId, "reason": "Abusive language"], expect: .created)
            let reportId = try #require(report["id"] as? String)
            let repeated = try await call(client, .post, "/v1/conversations/\(id)/reports", as: people.vendor, ["vendor"],
                                          body: ["messageId": rudeId, "reason": "Abusive language"], expect: .ok)
            #expect(repeated["id"] as? String == reportId)
            try await call(client, .post, "/v1/blocks", as: people.vendor, ["vendor"], body: ["userId": people.buyer.lowercased], expect: .created)
            try await call(client, .post, "/v1/blocks", as: people.vendor, ["vendor"], body: ["userId": people.buyer.lowercased], expect: .ok)
            try await call(client, .post, "/v1/blocks", as: people.vendor, ["vendor"], body: ["userId": people.vendor.lowercased], expect: .unprocessableContent)
            let blocked = try await call(client, .post, "/v1/conversations/\(id)/messages", as: people.buyer, body: ["body": "Why?"], expect: .forbidden)
            #expect(blocked["type"] as? String == "https://marketplace.example/problems/blocked")
            try await call(client, .get, "/v1/conversations/\(id)/messages", as: people.buyer, expect: .forbidden)
            try await call(client, .post, "/v1/conversations/\(id)/messages", as: people.vendor, ["vendor"], body: ["body": "x"], expect: .forbidden)
            try await call(client, .post, "/v1/conversations", as: people.buyer, body: ["listingId": listing.lowercased, "body": "again"], expect: .forbidden)
            let blocks = try await call(client, .get, "/v1/blocks", as: people.vendor, ["vendor"], expect: .ok)
            #expect((blocks["items"] as? [[String: Any]])?.first?["displayName"] as? String == "Bea Buyer")

            // The desk: the queue oldest first, the conversation as written (audited), the resolution.
            try await call(client, .get, "/v1/moderation/reports", as: people.buyer, expect: .forbidden)
            let queue = try await call(client, .get, "/v1/moderation/reports?status=open", as: people.moderator, ["moderator"], expect: .ok)
            #expect((queue["items"] as? [[String: Any]])?.contains { $0["id"] as? String == reportId } == true)
            let desk = try await call(client, .get, "/v1/moderation/conversations/\(id)", as: people.moderator, ["moderator"], expect: .ok)
            let original = (desk["items"] as? [[String: Any]])?.first { $0["id"] as? String == rudeId }
            #expect(original?["body"] as? String == "Something rude" && !(original?["deletedAt"] is NSNull))
            let resolved = try await call(client, .post, "/v1/moderation/reports/\(reportId)/resolve", as: people.moderator, ["moderator"],
                                          body: ["action": "remove_message", "note": "Insults a member"], expect: .ok)
            #expect(resolved["status"] as? String == "resolved" && resolved["action"] as? String == "remove_message")
            let again = try await call(client, .post, "/v1/moderation/reports/\(reportId)/resolve", as: people.moderator, ["moderator"],
                                       body: ["action": "dismiss", "note": "again"], expect: .conflict)
            #expect(again["type"] as? String == "https://marketplace.example/problems/invalid-transition")

            // Another conversation, never reported: the desk needs a reason.
            let other = try await call(client, .post, "/v1/conversations", as: people.stranger, body: ["listingId": listing.lowercased, "body": "Hi"],
                                       expect: .created)
            let otherId = try #require(other["id"] as? String)
            let refused = try await call(client, .get, "/v1/moderation/conversations/\(otherId)", as: people.moderator, ["moderator"], expect: .forbidden)
            #expect(refused["type"] as? String == "https://marketplace.example/problems/reason-required")
            try await call(client, .get, "/v1/moderation/conversations/\(otherId)?reason=Dispute%20about%20order%2042", as: people.moderator, ["moderator"],
                           expect: .ok)

            try await call(client, .get, "/v1/moderation/audit-log", as: people.moderator, ["moderator"], expect: .forbidden)
            let log = try await call(client, .get, "/v1/moderation/audit-log", as: people.admin, ["admin"], expect: .ok)
            let entries = (log["items"] as? [[String: Any]] ?? []).map { "\($0["subject"] as? String ?? "") \($0["reason"] as? String ?? "")" }
            #expect(entries == ["conversation Dispute about order 42", "report.remove_message Insults a member", "conversation reported"],
                    "newest first: who read what and why")
            #expect((log["items"] as? [[String: Any]])?.first?["actorName"] as? String == "Mo Derator")
            _ = vendorReply
        }
    }

    @Test func newMessagesMailAtOnceThenAtMostOncePerTenMinutesWhileUnread() async throws {
        try await withMessaging { client, postgres, inbox, service async throws in
            let people = People(), listing = UUID.v7()
            try await seed(inbox, people, listing: listing)
            let opened = try await call(client, .post, "/v1/conversations", as: people.buyer, body: ["listingId": listing.lowercased, "body": "First"],
                                        expect: .created)
            let id = try #require(opened["id"] as? String)
            for text in ["Second", "Third"] {
                try await call(client, .post, "/v1/conversations/\(id)/messages", as: people.buyer, body: ["body": text], expect: .created)
            }
            let mails: PostgresQuery = "SELECT count(*) FROM mails WHERE kind = 'message.received'"
            #expect(try await TestInfrastructure.scalar(postgres, mails) == 1, "the first message mails the vendor; the next two wait")
            let due = try await TestInfrastructure.scalar(postgres, "SELECT count(*) FROM jobs WHERE kind = 'messaging.message-mail-check' AND due_at > now() + interval '9 minutes'")
            #expect(due == 1, "a durable check 10 minutes on")

            // The check falls due (run here as the job runner would): two unread messages came after the mail.
            let check = MessageMail.Check(conversationId: try #require(UUID(uuidString: id)), userId: people.vendor)
            let context = OperationContext.background(service: "messaging", logger: logger, clock: BusinessClock())
            func runCheck() async throws {
                try await Database.transaction(postgres, context) { tx in
                    try await MessageMail.run(check, notifier: service.notifier, repository: service.conversations, in: tx)
                }
            }
            try await runCheck()
            #expect(try await TestInfrastructure.scalar(postgres, mails) == 2)
            try await runCheck()
            #expect(try await TestInfrastructure.scalar(postgres, mails) == 2, "nothing new since that mail: no mail")

            // Read, then a new message: the check finds nothing unread and sends nothing.
            try await call(client, .post, "/v1/conversations/\(id)/messages", as: people.buyer, body: ["body": "Fourth"], expect: .created)
            try await call(client, .post, "/v1/conversations/\(id)/read", as: people.vendor, ["vendor"], expect: .ok)
            try await runCheck()
            #expect(try await TestInfrastructure.scalar(postgres, mails) == 2, "read already: no mail")
        }
    }

    @Test func notificationPreferencesAndOneClickUnsubscribe() async throws {
        try await withMessaging { client, postgres, inbox, service async throws in
            let people = People(), listing = UUID.v7()
            try await seed(inbox, people, listing: listing)
            var prefs = try await call(client, .get, "/v1/notifications/preferences", as: people.vendor, ["vendor"], expect: .ok)
            #expect((prefs["items"] as? [[String: Any]])?.count == NotificationKind.all.count)
            try await call(client, .put, "/v1/notifications/preferences", as: people.vendor, ["vendor"],
                           body: ["items": [["kind": "account.password_reset", "email": false]]], expect: .unprocessableContent)
            prefs = try await call(client, .put, "/v1/notifications/preferences", as: people.vendor, ["vendor"],
                                   body: ["items": [["kind": "order.paid", "email": false]]], expect: .ok)
            #expect((prefs["items"] as? [[String: Any]])?.first { $0["kind"] as? String == "order.paid" }?["email"] as? Bool == false)

            // A moderation decision: in app (and on the list, unread first) and a mail with its unsubscribe link.
            try await deliver(inbox, ListingEvents.moderated, ListingModeratedV1(listingId: listing, vendorId: people.vendor, title: "Collie pups",
                                                                                 decision: "approved", reason: nil, moderatorId: people.moderator, decidedAt: Date()))
            let list = try await call(client, .get, "/v1/notifications", as: people.vendor, ["vendor"], expect: .ok)
            let first = try #require((list["items"] as? [[String: Any]])?.first)
            #expect(first["kind"] as? String == "listing.approved" && first["read"] as? Bool == false)
            let marked = try await call(client, .post, "/v1/notifications/read", as: people.vendor, ["vendor"], body: ["all": true], expect: .ok)
            #expect(marked["marked"] as? Int == 1 && marked["unreadCount"] as? Int == 0)
            let link = try #require(try await postgres.query("SELECT unsubscribe_url FROM mails WHERE user_id = \(people.vendor)").collect().first?.decode(String.self))
            #expect(link.hasPrefix("http://127.0.0.1:8080/v1/notifications/unsubscribe/"))
            let token = try #require(link.split(separator: "/").last.map(String.init))
            try await client.execute(uri: "/v1/notifications/unsubscribe/\(token)", method: .post) { response async throws in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/notifications/unsubscribe/\(token)x", method: .post) { response async throws in
                #expect(response.status == .unprocessableContent)
            }
            prefs = try await call(client, .get, "/v1/notifications/preferences", as: people.vendor, ["vendor"], expect: .ok)
            #expect((prefs["items"] as? [[String: Any]])?.first { $0["kind"] as? String == "listing.approved" }?["email"] as? Bool == false)
            _ = service
        }
    }

    /// Every kind a foreign event causes, each event delivered twice: one mail each, then each in
    /// the catcher once; with the relay down first, the mails wait and arrive once it is back.
    @Test(.enabled(if: TestInfrastructure.mailAvailable))
    func everyKindFromItsEventToOneMailInTheCatcherEvenWithTheRelayDownFirst() async throws {
        let down = "smtp://127.0.0.1:1"
        try await withMessaging(smtp: down) { _, postgres, inbox, service async throws in
            let people = People(), listing = UUID.v7(), order = UUID.v7(), subscription = UUID.v7()
            try await seed(inbox, people, listing: listing)
            let buyerAddress = "\(people.buyer.lowercased.suffix(12))@example.com"
            let tokenExpiry = EventCoding.formatTime(Date().addingTimeInterval(1800))
            func twice<Payload>(_ contract: EventContract<Payload>, _ payload: Payload) async throws {
                let id = UUID().uuidString.lowercased()
                try await deliver(inbox, contract, payload, id: id)
                try await deliver(inbox, contract, payload, id: id)
            }
            for template in ["email-verification", "password-reset", "password-changed"] {
                try await twice(NotificationEvents.requested, NotificationRequestedV1(notificationId: UUID.v7(), userId: people.buyer, to: buyerAddress,
                                                                                      template: template,
                                                                                      data: ["token": "tok-\(template)", "expiresAt": tokenExpiry, "displayName": "Bea"]))
            }
            for decision in ["approved", "rejected", "removed"] {
                try await twice(ListingEvents.moderated, ListingModeratedV1(listingId: listing, vendorId: people.vendor, title: "Collie pups",
                                                                            decision: decision, reason: "Photos unclear", moderatorId: people.moderator, decidedAt: Date()))
            }
            for contract in [BillingEvents.trialEnding, BillingEvents.paymentFailed, BillingEvents.suspended, BillingEvents.reactivated, BillingEvents.canceled] {
                try await twice(contract, SubscriptionNoticeV1(subscriptionId: subscription, vendorId: people.vendor, status: "active", planName: "Breeder",
                                                               amountDue: 2_900, currency: "GBP", invoiceId: nil, nextAttemptAt: Date(), trialEnd: Date(),
                                                               occurredAt: Date()))
            }
            try await twice(OrderEvents.placed, OrderPlacedV1(orderId: order, listingId: listing, buyerId: people.buyer, quantity: 1, placedAt: Date(),
                                                              vendorId: people.vendor, unitPriceAmount: 50_000, totalAmount: 50_000, commissionAmount: 2_500, currency: "GBP"))
            try await twice(OrderEvents.paid, OrderPaidV1(orderId: order, listingId: listing, paidAt: Date(), buyerId: people.buyer, vendorId: people.vendor))
            try await twice(OrderEvents.shipped, OrderShippedV1(orderId: order, listingId: listing, buyerId: people.buyer, vendorId: people.vendor,
                                                                carrier: "Royal Mail", trackingNumber: "RM123", shippedAt: Date()))
            try await twice(OrderEvents.delivered, OrderDeliveredV1(orderId: order, listingId: listing, buyerId: people.buyer, vendorId: people.vendor,
                                                                    deliveredAt: Date(), receiptAssumedAt: Date().addingTimeInterval(14 * 86_400)))
            try await twice(PaymentEvents.refunded, PaymentRefundedV1(orderId: order, intentId: "pi_1", refundId: "re_1", amount: 1_000, refundedTotal: 1_000,
                                                                      currency: "GBP", refundedAt: Date()))
            try await twice(OrderEvents.received, OrderReceivedV1(orderId: order, listingId: listing, buyerId: people.buyer, vendorId: people.vendor,
                                                                  totalAmount: 50_000, refundedAmount: 1_000, commissionAmount: 2_450, vendorAmount: 46_550,
                                                                  currency: "GBP", assumed: false, receivedAt: Date()))
            let second = UUID.v7()
            try await deliver(inbox, OrderEvents.placed, OrderPlacedV1(orderId: second, listingId: listing, buyerId: people.buyer, quantity: 1,
                                                                       placedAt: Date(), vendorId: people.vendor))
            try await twice(OrderEvents.canceled, OrderCanceledV1(orderId: second, listingId: listing, reason: "payment_timeout", canceledAt: Date(),
                                                                  buyerId: people.buyer, vendorId: people.vendor, wasPaid: false))

            let dispute = UUID.v7()
            try await twice(DisputeEvents.opened, DisputeOpenedV1(disputeId: dispute, orderId: order, listingId: listing, buyerId: people.buyer,
                                                                 vendorId: people.vendor, reason: "damaged", openedAt: Date()))
            let changed = DisputeChangedV1(disputeId: dispute, orderId: order, listingId: listing, buyerId: people.buyer, vendorId: people.vendor, at: Date())
            try await twice(DisputeEvents.escalated, changed)
            try await twice(DisputeEvents.withdrawn, changed)
            try await twice(DisputeEvents.resolved, DisputeResolvedV1(disputeId: dispute, orderId: order, listingId: listing, buyerId: people.buyer,
                                                                     vendorId: people.vendor, outcome: "refund", refundAmount: 10_000, totalAmount: 50_000,
                                                                     currency: "GBP", resolvedAt: Date()))

            var kinds: [String: Int] = [:]
            for try await (kind, count) in try await postgres.query("SELECT kind, count(*) FROM mails GROUP BY kind").decode((String, Int64).self) {
                kinds[kind] = Int(count)
            }
            let expected = ["account.email_verification": 1, "account.password_reset": 1, "account.password_changed": 1, "listing.approved": 1,
                            "listing.rejected": 1, "listing.removed": 1, "subscription.trial_ending": 1, "subscription.payment_failed": 1,
                            "subscription.suspended": 1, "subscription.reactivated": 1, "subscription.canceled": 1, "order.placed": 2, "order.paid": 1,
                            "order.shipped": 1, "order.delivered": 1, "payment.refunded": 1, "order.received": 1, "order.canceled": 2,
                            "dispute.opened": 1, "dispute.escalated": 1, "dispute.withdrawn": 1, "dispute.resolved": 2]
            #expect(kinds == expected, "one mail per event and recipient, whatever the redeliveries")

            // The relay is down: every attempt defers; nothing is lost or given up.
            let ids = try await postgres.query("SELECT id FROM mails ORDER BY id").collect().map { try $0.decode(UUID.self) }
            let context = OperationContext.background(service: "messaging", logger: logger, clock: BusinessClock())
            let downClient = try SMTPClient(settings: SMTPSettings(url: down, timeout: .seconds(2)))
            try await Database.transaction(postgres, context) { tx in
                try await MailQueue.deliver(ids, client: downClient, from: service.settings.from, in: tx)
            }
            let waiting = try await TestInfrastructure.scalar(postgres, "SELECT count(*) FROM mails WHERE status = 'queued' AND attempts = 1 AND last_error LIKE 'transient%'")
            #expect(waiting == Int64(ids.count))
            let rescheduled = try await TestInfrastructure.scalar(postgres, "SELECT count(*) FROM jobs WHERE kind = 'messaging.send-mail' AND due_at > now()")
            #expect(rescheduled == Int64(ids.count), "each mail's retry is a durable timer")

            // The relay is back: each mail arrives once; a second run sends nothing again.
            let upClient = try SMTPClient(settings: SMTPSettings(url: try #require(TestInfrastructure.smtpURL), timeout: .seconds(5)))
            for _ in 0..<2 {
                try await Database.transaction(postgres, context) { tx in
                    try await MailQueue.deliver(ids, client: upClient, from: service.settings.from, in: tx)
                }
            }
            #expect(try await TestInfrastructure.scalar(postgres, "SELECT count(*) FROM mails WHERE status = 'sent'") == Int64(ids.count))
            let catcher = try MailDeliveryIntegrationTests()
            let toBuyer = try await catcher.mails(to: buyerAddress)
            #expect(toBuyer.count == 8, "3 account mails, shipped, delivered, refunded, canceled, the dispute's decision, and nothing twice")
            let verification = try #require(toBuyer.first { ($0["Subject"] as? String) == "Confirm your email address" })
            let detail = try await catcher.detail(try #require(verification["ID"] as? String))
            #expect((detail["Text"] as? String)?.contains("/verify-email?token=tok-email-verification") == true)
            let vendorMails = try await catcher.mails(to: "\(people.vendor.lowercased.suffix(12))@example.com")
            #expect(vendorMails.count == 16, "3 moderation decisions, 5 subscription notices, 2 placed, paid, received, canceled, 3 about the dispute")
            let adminMails = try await catcher.mails(to: "\(people.admin.lowercased.suffix(12))@example.com")
            #expect(adminMails.map { $0["Subject"] as? String } == ["Dispute about Collie pups unresolved for 14 days"], "the escalation, to the admin")
        }
    }
}
