import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO
import ServiceLifecycle

/// The messaging service: conversations between buyers and vendors (with contact details masked
/// until a paid order), blocks, reports and the moderation desk with its audit log, in-app
/// notifications and the mail queue, and the event stream. Owns the `messaging` schema.
public struct MessagingService: ServiceModule {
    public static let name = "messaging"
    public static let defaultPort = 8085
    public static let consumedTopics = [Topics.identityUsers, Topics.identityNotifications, Topics.listingsListings, Topics.ordersOrders, Topics.billingSubscriptions, Topics.billingPayments]
    /// The most conversations, messages and notifications one data export lists (the newest).
    static let exportLimit = 1000

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let client: PostgresClient
    let settings: MailSettings
    let smtp: SMTPClient
    let notifier: Notifier
    let conversations = ConversationRepository()
    let hub = StreamHub()
    let logger: Logger
    let bodyLimit: Int

    public init(dependencies: ServiceDependencies) throws {
        client = dependencies.postgres
        settings = try MailSettings(config: dependencies.config)
        smtp = try SMTPClient(settings: settings.smtp)
        notifier = Notifier(settings: settings)
        logger = dependencies.logger
        bodyLimit = dependencies.settings.maxBodyBytes
    }

    public func addRoutes(to router: ServiceRouter) {
        let ownHosts = [settings.clientURL, settings.apiURL].compactMap { URLComponents(string: $0)?.host }
        ConversationRoutes(client: client, conversations: conversations, notifier: notifier, detector: ContactDetector(allowedHosts: ownHosts),
                           bodyLimit: bodyLimit).addRoutes(to: router)
        ModerationRoutes(client: client, conversations: conversations, bodyLimit: bodyLimit).addRoutes(to: router)
        NotificationRoutes(client: client, notifier: notifier, bodyLimit: bodyLimit).addRoutes(to: router)
        StreamRoutes(client: client, hub: hub).addRoutes(to: router)
    }

    public var backgroundServices: [any Service] { [StreamService(hub: hub, client: client, logger: logger)] }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        // The projections first: a trigger of the same event reads what they wrote.
        Projections.register(into: &handlers)
        NotificationTriggers.register(notifier, into: &handlers)
        PrivacyParticipant.register(
            service: Self.name,
            export: { user, transaction in
                let profile = try await UsersProjection.exportJSON(user, in: transaction)
                let exported = try await transaction.first("""
                    SELECT json_build_object(
                        'conversations', (SELECT coalesce(json_agg(json_build_object('id', c.id, 'buyerId', c.buyer_id, 'vendorId', c.vendor_id,
                                                                                     'listingId', c.listing_id, 'orderId', c.order_id, 'createdAt', c.created_at)
                                                                   ORDER BY c.created_at DESC), '[]'::json)
                                          FROM (SELECT * FROM conversations WHERE buyer_id = \(user) OR vendor_id = \(user)
                                                ORDER BY created_at DESC LIMIT \(Self.exportLimit)) c),
                        'messages', (SELECT coalesce(json_agg(json_build_object('id', m.id, 'conversationId', m.conversation_id, 'body', m.body,
                                                                                'deletedAt', m.deleted_at, 'createdAt', m.created_at)
                                                              ORDER BY m.created_at DESC), '[]'::json)
                                     FROM (SELECT * FROM messages WHERE author_id = \(user) ORDER BY created_at DESC LIMIT \(Self.exportLimit)) m),
                        'notifications', (SELECT coalesce(json_agg(json_build_object('kind', n.kind, 'title', n.title, 'createdAt', n.created_at)
                                                                   ORDER BY n.created_at DESC), '[]'::json)
                                          FROM (SELECT * FROM notifications WHERE user_id = \(user) ORDER BY created_at DESC LIMIT \(Self.exportLimit)) n),
                        'blocks', (SELECT coalesce(json_agg(b.blocked_id), '[]'::json) FROM blocks b WHERE b.blocker_id = \(user))
                    )::text
                    """, as: String.self) ?? "{}"
                // One object: the profile, then the lists (json_build_object always writes `{…}`).
                return "{\"profile\":\(profile)," + exported.dropFirst()
            },
            erase: { user, transaction in try await Erasure.erase(user, in: transaction) },
            into: &handlers)
        return handlers
    }

    public var jobHandlers: JobHandlers {
        var handlers = JobHandlers()
        let smtp = smtp, sender = settings.from, notifier = notifier, conversations = conversations
        handlers.onSet(MailQueue.send) { set, tx in
            try await MailQueue.deliver(set.map(\.payload.mailId), client: smtp, from: sender, in: tx)
        }
        handlers.on(MessageMail.check) { check, _, tx in
            try await MessageMail.run(check, notifier: notifier, repository: conversations, in: tx)
        }
        handlers.every("prune-stream-events", .every(.seconds(600))) { tx in
            try await tx.query("""
                DELETE FROM stream_events WHERE id IN (
                    SELECT id FROM stream_events WHERE created_at < now() - make_interval(secs => \(EventStream.retention)) ORDER BY id LIMIT 5000)
                """)
        }
        return handlers
    }
}

