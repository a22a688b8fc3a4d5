import Crypto
import Foundation
import Platform
import Testing
@testable import Messaging

@Suite("masking contact details before an order is paid")
struct ContactDetectorTests {
    let detector = ContactDetector(allowedHosts: ["marketplace.example.com"])

    @Test("on the labelled corpus: recall at least 95 %, precision at least 98 % (figures printed)")
    func corpus() {
        let corpus = ContactCorpus.labelled
        #expect(corpus.count >= 300 && corpus.filter(\.contact).count >= 100 && corpus.filter { !$0.contact }.count >= 100)
        var truePositives = 0, falsePositives = 0, falseNegatives = 0
        var missed: [String] = [], wronglyMasked: [String] = []
        for (contact, text) in corpus {
            let masked = detector.masked(text).masked
            switch (contact, masked) {
            case (true, true): truePositives += 1
            case (false, true): falsePositives += 1; wronglyMasked.append(text)
            case (true, false): falseNegatives += 1; missed.append(text)
            case (false, false): break
            }
        }
        let precision = Double(truePositives) / Double(max(1, truePositives + falsePositives))
        let recall = Double(truePositives) / Double(max(1, truePositives + falseNegatives))
        print(String(format: "contact detector on %d labelled messages (%d with contact details): precision %.1f %%, recall %.1f %%",
                     corpus.count, truePositives + falseNegatives, precision * 100, recall * 100))
        for text in missed { print("  missed: \(text)") }
        for text in wronglyMasked { print("  masked without contact details: \(text)") }
        #expect(recall >= 0.95, "recall \(recall): missed \(missed)")
        #expect(precision >= 0.98, "precision \(precision): wrongly masked \(wronglyMasked)")
    }

    @Test("each detail is replaced where it stands; the rest of the message is kept")
    func replacement() {
        #expect(detector.masked("Call me on 07700 900123 or mail ann@example.com, thanks!").text
                == "Call me on [contact details hidden] or mail [contact details hidden], thanks!")
        #expect(detector.masked("jane (at) example (dot) com").text == "[contact details hidden]")
        #expect(detector.masked("See https://oakfield.example.org/litters?x=1 now").text == "See [contact details hidden] now")
        let clean = "Deposit £250 on 14/10/2026 at 10:30, chip 985112003456789."
        #expect(detector.masked(clean) == (clean, false))
    }

    @Test("links to the marketplace itself stay")
    func ownLinks() {
        #expect(!detector.masked("The listing: https://marketplace.example.com/listings/123").masked)
        #expect(!detector.masked("Pictures at www.marketplace.example.com/l/9").masked)
        #expect(detector.masked("Or marketplace.example.com.evil.example.net/x").masked)
    }

    @Test("skipping the patterns a text cannot match finds exactly what running them all finds")
    func hintsOnlySkipWork() {
        let extra = ["@", "a@b", "at dot", "x at y dot com", "ANN AT EXAMPLE DOT COM", "http://localhost/x", "12345678", "١٢٣٤٥٦٧٨٩٠١",
                     "+44 7700 900123", "meet at the park.", "", "no digits here", "wa.me/447700900123"]
        for text in ContactCorpus.labelled.map(\.text) + extra {
            #expect(detector.ranges(in: text) == detector.ranges(in: text, hints: .everything), "\(text)")
        }
    }

    @Test("overlapping finds become one replacement")
    func overlaps() {
        let text = "wa.me/447700900123"
        #expect(detector.masked(text).text == "[contact details hidden]")
    }
}

@Suite struct ConversationPolicyTests {
    typealias A = ConversationPolicy.Action
    enum Outcome: Equatable { case allowed(ConversationPolicy.Party), notFound, blocked, forbidden, reasonRequired }

    static func outcome(_ action: A, _ facts: ConversationPolicy.Facts, _ caller: Principal?, reason: String? = nil) -> Outcome {
        do {
            return .allowed(try ConversationPolicy.authorize(action, facts, by: caller, reason: reason))
        } catch MessagingError.conversationNotFound {
            return .notFound
        } catch MessagingError.blocked {
            return .blocked
        } catch MessagingError.reasonRequired {
            return .reasonRequired
        } catch {
            return .forbidden
        }
    }

    @Test func whoMayDoWhatToAConversation() {
        let buyer = UUID(), vendor = UUID()
        let buyerP = Principal(userId: buyer, roles: ["buyer"]), vendorP = Principal(userId: vendor, roles: ["vendor"])
        let moderator = Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd", "otp"])
        let admin = Principal(userId: UUID(), roles: ["admin"], authenticationMethods: ["pwd", "otp"])
        let moderatorWithoutSecondFactor = Principal(userId: UUID(), roles: ["moderator"], authenticationMethods: ["pwd"])
        let stranger = Principal(userId: UUID(), roles: ["buyer", "vendor"])
        func facts(blockers: Set<UUID> = [], reported: Bool = false, author: UUID? = nil) -> ConversationPolicy.Facts {
            ConversationPolicy.Facts(buyerId: buyer, vendorId: vendor, blockers: blockers, reported: reported, messageAuthorId: author)
        }
        let notFoundButDesk: [A: Outcome] = [.read: .notFound, .post: .notFound, .markRead: .notFound, .deleteMessage: .notFound,
                                             .report: .notFound, .staffRead: .forbidden]
        let staff: [A: Outcome] = [.read: .notFound, .post: .notFound, .markRead: .notFound, .deleteMessage: .notFound,
                                   .report: .notFound, .staffRead: .reasonRequired]
        // (who, facts, expected per action); the message acted on is the buyer's.
        let cases: [(String, Principal?, ConversationPolicy.Facts, [A: Outcome])] = [
            ("anonymous", nil, facts(author: buyer), [.read: .notFound, .post: .notFound, .markRead: .notFound, .deleteMessage: .notFound,
                                                      .report: .notFound, .staffRead: .notFound]),
            ("the buyer", buyerP, facts(author: buyer), [.read: .allowed(.buyer), .post: .allowed(.buyer), .markRead: .allowed(.buyer),
                                                         .deleteMessage: .allowed(.buyer), .report: .allowed(.buyer), .staffRead: .forbidden]),
            ("the vendor", vendorP, facts(author: buyer), [.read: .allowed(.vendor), .post: .allowed(.vendor), .markRead: .allowed(.vendor),
                                                           .deleteMessage: .forbidden, .report: .allowed(.vendor), .staffRead: .forbidden]),
            ("the buyer, blocked by the vendor", buyerP, facts(blockers: [vendor], author: buyer),
             [.read: .blocked, .post: .blocked, .markRead: .blocked, .deleteMessage: .allowed(.buyer), .report: .allowed(.buyer), .staffRead: .forbidden]),
            ("the vendor, who blocked the buyer", vendorP, facts(blockers: [vendor], author: buyer),
             [.read: .allowed(.vendor), .post: .blocked, .markRead: .allowed(.vendor), .deleteMessage: .forbidden, .report: .allowed(.vendor),
              .staffRead: .forbidden]),
            ("a stranger", stranger, facts(author: buyer), notFoundButDesk),
            ("a moderator", moderator, facts(author: buyer), staff),
            ("an admin", admin, facts(author: buyer), staff),
            ("a moderator, reported", moderator, facts(reported: true, author: buyer), staff.merging([.staffRead: .allowed(.staff)]) { $1 }),
            ("a moderator without a second factor", moderatorWithoutSecondFactor, facts(reported: true, author: buyer), notFoundButDesk),
        ]
        for (name, caller, facts, expected) in cases {
            for action in A.allCases {
                #expect(Self.outcome(action, facts, caller) == expected[action], "\(name) → \(action)")
            }
        }
        #expect(Self.outcome(.staffRead, facts(), moderator, reason: "dispute 42: the buyer says the puppy was not as described") == .allowed(.staff))
        #expect(Self.outcome(.staffRead, facts(), moderator, reason: "   ") == .reasonRequired)
        #expect(Self.outcome(.staffRead, facts(), stranger, reason: "curious") == .forbidden)
    }
}

struct ModerationAndLinkTests {
    @Test func aReportIsResolvedOnceWhicheverWay() throws {
        let allowed: [ReportStatus: [ReportAction: ReportStatus]] = [.open: [.dismiss: .resolved, .removeMessage: .resolved]]
        for status in ReportStatus.allCases {
            for action in ReportAction.allCases {
                if let next = allowed[status]?[action] {
                    #expect(try ReportStateMachine.transition(from: status, on: action) == next, "\(status) on \(action)")
                } else {
                    #expect(throws: Problem.self, "\(status) on \(action)") { try ReportStateMachine.transition(from: status, on: action) }
                }
            }
        }
    }

    @Test func anUnsubscribeLinkNamesItsUserAndKindAndCannotBeAltered() throws {
        let links = UnsubscribeLinks(key: .init(size: .bits256))
        let user = UUID()
        let token = links.token(user: user, kind: "order.shipped")
        #expect(links.verify(token)?.user == user && links.verify(token)?.kind == "order.shipped")
        let other = UUID().uuidString.lowercased()
        let forgeries = [
            token.replacingOccurrences(of: "order.shipped", with: "order.paid"),          // another kind, same signature
            other + token.dropFirst(36),                                                    // another user
            String(token.dropLast(2)),                                                      // a cut signature
            "\(user.uuidString.lowercased()).order.shipped.",                               // none
            "\(user.uuidString.lowercased()).no.such.kind." + token.split(separator: ".").last!,
            "", ".", "..",
        ]
        for forged in forgeries { #expect(links.verify(forged) == nil, "\(forged)") }
        #expect(UnsubscribeLinks(key: .init(size: .bits256)).verify(token) == nil, "another key")
    }

    @Test func amountsAndDaysReadAsPeopleWriteThem() {
        #expect(MailFormat.money(125_000, "GBP") == "£1250.00")
        #expect(MailFormat.money(5, "EUR") == "€0.05")
        #expect(MailFormat.money(1250, "JPY") == "1250 JPY")
        #expect(MailFormat.money(nil, "GBP") == "the amount due")
        #expect(MailFormat.day(Date(timeIntervalSince1970: 1_796_342_400)) == "4 December 2026")
        #expect(MailFormat.duration(1800) == "30 minutes" && MailFormat.duration(86_400) == "24 hours" && MailFormat.duration(3 * 86_400) == "3 days")
    }
}
