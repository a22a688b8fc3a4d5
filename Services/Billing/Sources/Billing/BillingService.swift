import Contracts
import Foundation
import Hummingbird
import Logging
import Platform
import PostgresNIO

/// The billing service: vendor plans and subscriptions (Stripe's semantics), invoices, payments
/// through a provider port (sandbox or Stripe), signed webhooks, and the ledger. Owns the
/// `billing` schema.
public struct BillingService: ServiceModule {
    public static let name = "billing"
    public static let defaultPort = 8083
    public static let consumedTopics = [Topics.identityUsers, Topics.ordersOrders]

    public static func migrations() throws -> [Migration] {
        try migrations(in: .module) + UsersProjection.migrations
    }

    let provider: any PaymentProvider
    let sandbox: SandboxProvider?
    let workflow: SubscriptionWorkflow
    let collection: PaymentCollection
    let orderPayments: OrderPayments
    let payouts: Payouts
    let controller: BillingController
    let marketplace: MarketplaceController

    public init(dependencies: ServiceDependencies) throws {
        let config = dependencies.config
        let plans = PlanRepository(client: dependencies.postgres)
        let (provider, sandbox) = try Self.provider(dependencies)
        self.provider = provider
        self.sandbox = sandbox
        workflow = SubscriptionWorkflow(plans: plans, provider: provider.name, dunning: try DunningSchedule.load(config))
        orderPayments = OrderPayments(provider: provider, ledger: workflow.ledger)
        collection = PaymentCollection(provider: provider, workflow: workflow, orders: orderPayments)
        payouts = Payouts(provider: provider, ledger: workflow.ledger, client: dependencies.postgres,
                          onboardingReturnURL: config.string("PAYOUT_ONBOARDING_RETURN_URL", default: "http://localhost:8080/vendor/payouts"),
                          onboardingRefreshURL: config.string("PAYOUT_ONBOARDING_REFRESH_URL", default: "http://localhost:8080/vendor/payouts/onboarding"))
        controller = BillingController(
            plans: plans, subscriptions: Subscriptions(client: dependencies.postgres, provider: provider, workflow: workflow),
            webhooks: WebhookIngestion(provider: provider, client: dependencies.postgres), bodyLimit: dependencies.settings.maxBodyBytes)
        marketplace = MarketplaceController(client: dependencies.postgres, sandbox: sandbox, orderPayments: orderPayments, payouts: payouts,
                                            bodyLimit: dependencies.settings.maxBodyBytes)
    }

    /// `PAYMENT_PROVIDER`: `sandbox` (the default: dev and tests) or `stripe`.
    static func provider(_ dependencies: ServiceDependencies) throws -> (any PaymentProvider, SandboxProvider?) {
        let config = dependencies.config
        switch config.string("PAYMENT_PROVIDER", default: "sandbox") {
        case "sandbox":
            let port = dependencies.settings.httpPort
            let sandbox = SandboxProvider(
                client: dependencies.postgres,
                webhookSecret: config.string("SANDBOX_WEBHOOK_SECRET", default: "whsec_sandbox_development_only"),
                webhookURL: config.string("SANDBOX_WEBHOOK_URL", default: "http://127.0.0.1:\(port)/v1/webhooks/sandbox"),
                chaos: try Self.flag(config, "SANDBOX_WEBHOOK_CHAOS"),
                httpClient: dependencies.httpClient, logger: dependencies.logger, clock: dependencies.clock)
            return (sandbox, sandbox)
        case "stripe":
            let base = config.string("STRIPE_API_BASE", default: StripeProvider.defaultBaseURL.absoluteString)
            guard let baseURL = URL(string: base), baseURL.scheme == "https" || baseURL.host == "127.0.0.1" || baseURL.host == "localhost" else {
                throw ConfigError.invalidValue(key: "STRIPE_API_BASE", expected: "an https URL (http only to a local stand-in)")
            }
            // Each attempt's bound: an unreachable Stripe keeps a request (and a job) waiting this
            // long per attempt, as the client retries connecting until then.
            let timeout = try config.int("STRIPE_TIMEOUT_MS", default: 30_000, range: 100...120_000)
            let stripe = StripeProvider(secretKey: try config.required("STRIPE_SECRET_KEY"),
                                        webhookSecret: try config.required("STRIPE_WEBHOOK_SECRET"),
                                        baseURL: baseURL, httpClient: dependencies.httpClient, timeout: .milliseconds(Int64(timeout)))
            return (stripe, nil)
        default:
            throw ConfigError.invalidValue(key: "PAYMENT_PROVIDER", expected: "sandbox or stripe")
        }
    }

    static func flag(_ config: ConfigReader, _ key: String) throws -> Bool {
        switch config.string(key, default: "off") {
        case "on": return true
        case "off": return false
        default: throw ConfigError.invalidValue(key: key, expected: "on or off")
        }
    }

    public func addRoutes(to router: ServiceRouter) {
        controller.addRoutes(to: router)
        marketplace.addRoutes(to: router)
    }

    public var eventHandlers: EventHandlers {
        var handlers = EventHandlers()
        UsersProjection.register(into: &handlers)
        let orderPayments = orderPayments
        handlers.on(OrderEvents.placed) { order, _, tx in try await orderPayments.placed(order, in: tx) }
        handlers.on(OrderEvents.canceled) { order, _, tx in try await orderPayments.canceled(order, in: tx) }
        handlers.on(OrderEvents.received) { order, _, tx in try await orderPayments.received(order, in: tx) }
        handlers.on(DisputeEvents.opened) { dispute, _, tx in try await orderPayments.disputeOpened(dispute, in: tx) }
        handlers.on(DisputeEvents.withdrawn) { dispute, _, tx in try await orderPayments.disputeWithdrawn(dispute, in: tx) }
        handlers.on(DisputeEvents.resolved) { dispute, _, tx in try await orderPayments.disputeResolved(dispute, in: tx) }
        UsersProjection.participate(as: Self.name, into: &handlers)
        return handlers
    }

    public var jobHandlers: JobHandlers {
        var handlers = JobHandlers()
        let workflow = workflow
        let collection = collection
        handlers.onSet(SubscriptionWorkflow.renew) { timers, tx in
            try await workflow.renew(timers.map(\.payload), in: tx)
        }
        handlers.onSet(SubscriptionWorkflow.finalizeDrafts) { finalizers, tx in
            try await workflow.finalizeDrafts(finalizers.map(\.payload), in: tx)
        }
        let orderPayments = orderPayments
        handlers.on(OrderPayments.createIntent) { intent, _, tx in try await orderPayments.createIntent(for: intent.orderId, in: tx) }
        handlers.on(OrderPayments.cancelIntent) { intent, _, tx in try await orderPayments.cancelIntent(of: intent.orderId, in: tx) }
        handlers.on(OrderPayments.refund) { refund, _, tx in try await orderPayments.performRefund(refund.refundId, in: tx) }
        handlers.on(OrderPayments.reconcileChargeback) { dispute, _, tx in try await orderPayments.reconcileChargeback(dispute.disputeId, in: tx) }
        let payouts = payouts
        handlers.every(Payouts.dailyRun, .daily(hour: 2, minute: 0)) { tx in try await payouts.scheduleDaily(in: tx) }
        handlers.on(Payouts.payVendor) { job, _, tx in try await payouts.pay(job, in: tx) }
        handlers.on(SubscriptionWorkflow.trialEnding) { timer, _, tx in
            try await workflow.applyIfAllowed(.trialEnding, to: timer.subscriptionId, in: tx)
        }
        handlers.on(SubscriptionWorkflow.incompleteDeadline) { timer, _, tx in
            try await workflow.applyIfAllowed(.incompleteDeadlinePassed, to: timer.subscriptionId, in: tx)
        }
        handlers.on(SubscriptionWorkflow.autoResume) { timer, _, tx in
            try await workflow.applyIfAllowed(.resume, to: timer.subscriptionId, input: SubscriptionInput(note: "automatic resume"), in: tx)
        }
        handlers.onSet(SubscriptionWorkflow.chargeInvoice) { charges, tx in
            try await collection.charge(charges.map(\.payload.invoiceId), in: tx)
        }
        handlers.onSet(PaymentCollection.reconcileIntent) { reconciliations, tx in
            try await collection.reconcile(reconciliations.map(\.payload.intentId), in: tx)
        }
        if let sandbox {
            handlers.onSet(SandboxProvider.deliver) { deliveries, tx in
                try await sandbox.deliver(deliveries.map(\.payload), in: tx)
            }
        }
        return handlers
    }
}
