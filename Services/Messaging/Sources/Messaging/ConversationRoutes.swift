import Foundation
import Hummingbird
import Platform
import PostgresNIO

/// The conversation endpoints: each parses, authorizes through `ConversationPolicy`, runs one
/// transaction, and answers.
struct ConversationRoutes: Sendable {
    let client: PostgresClient
    let conversations: ConversationRepository
    let notifier: Notifier
    let detector: ContactDetector
    let bodyLimit: Int

    private struct OpenBody: Decodable {
        var listingId: String?
        var orderId: String?
        var body: String?
    }

    private struct PostBody: Decodable {
        var body: String?
    }

    private struct ReportBody: Decodable {
        var messageId: String?
        var reason: String?
    }

    func addRoutes(to router: ServiceRouter) {
        let signedIn = router.group().add(middleware: RequireSignedIn())
        // Writing needs a proven address: the other side can only ever answer by mail to one.
        let writers = router.group().add(middleware: RequireSignedIn()).add(middleware: RequireVerifiedEmail())

        signedIn.get("/v1/conversations") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let page = try KeysetPageRequest(request, order: ConversationRepository.latestFirst, binding: ConversationRepository.binding)
            let found = try await Database.transaction(client, context.operation) { tx in
                try await conversations.page(participant: caller.userId, page, in: tx)
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }

        writers.post("/v1/conversations") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let body = try await JSONBody.decode(OpenBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let listingId = v.uuid(body.listingId, "listingId", required: false)
            let orderId = v.uuid(body.orderId, "orderId", required: false)
            let text = v.text(body.body, "body", length: 1...ConversationRepository.maximumBody, multiline: true)
            if body.listingId == nil && body.orderId == nil { v.add("listingId", "either listingId or orderId is required") }
            if body.listingId != nil && body.orderId != nil { v.add("orderId", "give either listingId or orderId, not both") }
            try v.check()
            guard let text else { throw Problem.validation([]) }
            let (view, created) = try await Database.transaction(client, context.operation) { tx -> (ConversationView, Bool) in
                let (buyer, vendor, title) = try await parties(listingId: listingId, orderId: orderId, caller: caller.userId, in: tx)
                let (id, created) = try await conversations.open(buyer: buyer, vendor: vendor, listingId: orderId == nil ? listingId : nil,
                                                                 orderId: orderId, title: title, in: tx)
                guard let conversation = try await conversations.load(id, lock: true, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.post, conversation.facts, by: caller)
                try await post(text, by: caller.userId, in: conversation, tx: tx)
                guard let view = try await conversations.view(id, for: caller.userId, in: tx) else { throw MessagingError.conversationNotFound }
                return (view, created)
            }
            return try JSONResponse.make(view, status: created ? .created : .ok, cacheControl: "private, no-store",
                                         headers: [.location: "/v1/conversations/\(view.id.lowercased)"])
        }

        signedIn.get("/v1/conversations/{id}") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            let view = try await Database.transaction(client, context.operation) { tx -> ConversationView in
                guard let conversation = try await conversations.load(id, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.read, conversation.facts, by: caller)
                guard let view = try await conversations.view(id, for: caller.userId, in: tx) else { throw MessagingError.conversationNotFound }
                return view
            }
            return try JSONResponse.make(view, cacheControl: "private, no-store")
        }

        signedIn.get("/v1/conversations/{id}/messages") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            let page = try KeysetPageRequest(request, order: ConversationRepository.messagesNewestFirst, binding: ConversationRepository.messagesBinding(id))
            let found = try await Database.transaction(client, context.operation) { tx -> Page<MessageView> in
                guard let conversation = try await conversations.load(id, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.read, conversation.facts, by: caller)
                return try await conversations.messages(of: conversation, for: caller.userId, page, in: tx)
            }
            return try JSONResponse.make(found, cacheControl: "private, no-store")
        }

        writers.post("/v1/conversations/{id}/messages") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            let body = try await JSONBody.decode(PostBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let text = v.text(body.body, "body", length: 1...ConversationRepository.maximumBody, multiline: true)
            try v.check()
            guard let text else { throw Problem.validation([]) }
            let message = try await Database.transaction(client, context.operation) { tx -> MessageView in
                guard let conversation = try await conversations.load(id, lock: true, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.post, conversation.facts, by: caller)
                return try await post(text, by: caller.userId, in: conversation, tx: tx)
            }
            return try JSONResponse.make(message, status: .created, cacheControl: "private, no-store")
        }

        signedIn.post("/v1/conversations/{id}/read") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            let view = try await Database.transaction(client, context.operation) { tx -> ConversationView in
                guard let conversation = try await conversations.load(id, lock: true, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.markRead, conversation.facts, by: caller)
                try await conversations.markRead(conversation, by: caller.userId, in: tx)
                guard let view = try await conversations.view(id, for: caller.userId, in: tx) else { throw MessagingError.conversationNotFound }
                return view
            }
            return try JSONResponse.make(view, cacheControl: "private, no-store")
        }

        signedIn.delete("/v1/conversations/{id}/messages/{messageId}") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            let messageId = try context.uuidParameter("messageId", notFound: MessagingError.messageNotFound)
            try await Database.transaction(client, context.operation) { tx in
                guard let conversation = try await conversations.load(id, in: tx) else { throw MessagingError.conversationNotFound }
                // Visibility first: a stranger learns nothing about the message. (Its author may
                // delete it even after a block, so this is the check reports make, not reading's.)
                try ConversationPolicy.authorize(.report, conversation.facts, by: caller)
                guard let (author, deleted) = try await conversations.author(of: messageId, in: id, tx: tx),
                      !(deleted && author == caller.userId) else { throw MessagingError.messageNotFound }
                var facts = conversation.facts
                facts.messageAuthorId = author
                try ConversationPolicy.authorize(.deleteMessage, facts, by: caller)
                try await conversations.softDelete(messageId, in: tx)
            }
            return Response(status: .noContent, headers: [.cacheControl: "private, no-store"])
        }

        signedIn.post("/v1/conversations/{id}/reports") { request, context -> Response in
            let caller = try context.requirePrincipal()
            let id = try context.uuidParameter(notFound: MessagingError.conversationNotFound)
            let body = try await JSONBody.decode(ReportBody.self, from: request, limit: bodyLimit)
            var v = Validator()
            let messageId = v.uuid(body.messageId, "messageId", required: false)
            let reason = v.text(body.reason, "reason", length: 3...1000, multiline: true)
            try v.check()
            guard let reason else { throw Problem.validation([]) }
            let (report, created) = try await Database.transaction(client, context.operation) { tx -> (ReportView, Bool) in
                guard let conversation = try await conversations.load(id, in: tx) else { throw MessagingError.conversationNotFound }
                try ConversationPolicy.authorize(.report, conversation.facts, by: caller)
                if let messageId, try await conversations.author(of: messageId, in: id, tx: tx) == nil {
                    throw Problem.validation([FieldError("messageId", "is not a message of this conversation")])
                }
                return try await Reports.file(conversation: id, message: messageId, by: caller.userId, reason: reason, in: tx)
            }
            return try JSONResponse.make(report, status: created ? .created : .ok, cacheControl: "private, no-store")
        }
    }

    /// The buyer, the vendor and the title of a conversation about a listing or an order.
    private func parties(listingId: UUID?, orderId: UUID?, caller: UUID, in tx: Transaction) async throws -> (UUID, UUID, String?) {
        if let orderId {
            guard let order = try await OrderFacts.load(orderId, in: tx), let vendor = order.vendorId,
                  caller == order.buyerId || caller == vendor else { throw MessagingError.orderNotFound }
            return (order.buyerId, vendor, order.title)
        }
        guard let listingId else { throw Problem.validation([FieldError("listingId", "is required")]) }
        let rows = try await tx.query("SELECT vendor_id, title, published FROM listing_facts WHERE listing_id = \(listingId)")
        for try await (vendor, title, published) in rows.decode((UUID, String, Bool).self) {
            guard vendor != caller else {
                throw Problem.validation([FieldError("listingId", "is your own listing: buyers write to you about it")])
            }
            // A new conversation needs a listing buyers can see; one that exists goes on (open() finds it).
            if !published,
               try await tx.first("SELECT 1 FROM conversations WHERE buyer_id = \(caller) AND listing_id = \(listingId) AND order_id IS NULL",
                                  as: Int32.self) == nil {
                throw MessagingError.listingNotFound
            }
            return (caller, vendor, title)
        }
        throw MessagingError.listingNotFound
    }

    /// Posts the message (masked for the recipient when it holds contact details) and mails the
    /// recipient if their last mail about this conversation is 10 minutes old.
    @discardableResult
    private func post(_ text: String, by author: UUID, in conversation: ConversationRow, tx: Transaction) async throws -> MessageView {
        let (masked, hidden) = detector.masked(text)
        let (message, mailNow) = try await conversations.post(text, masked: hidden ? masked : nil, by: author, in: conversation, in: tx)
        if mailNow {
            try await MessageMail.mail(conversation, to: conversation.other(than: author), from: author, notifier: notifier,
                                       cause: "message:\(message.id.lowercased)", in: tx)
        }
        return message
    }
}
