import Platform

/// Where a vendor's subscription is, with Stripe's names. `cancelAtPeriodEnd` is a flag beside
/// the status, not a status.
enum SubscriptionStatus: String, CaseIterable, Sendable, Codable {
    /// In a free trial: may publish and list; the first invoice comes at the trial's end.
    case trialing
    /// The first payment failed; the vendor has 23 hours to fix the payment method.
    case incomplete
    /// Nobody paid within those 23 hours. Terminal.
    case incompleteExpired = "incomplete_expired"
    case active
    /// A renewal payment failed and dunning retries it: listings stay, no new publishing.
    case pastDue = "past_due"
    /// Dunning ran out of retries: listings hidden (kept); paying the open invoice reactivates.
    case suspended
    /// The vendor paused: no collection, no listing, at most three months.
    case paused
    /// Terminal.
    case canceled

    var isTerminal: Bool { self == .incompleteExpired || self == .canceled }

    /// What the status lets the vendor do, for `entitlement.changed`.
    var entitlement: (mayPublish: Bool, mayList: Bool) {
        switch self {
        case .trialing, .active: (true, true)
        case .pastDue: (false, true)
        case .incomplete, .incompleteExpired, .suspended, .paused, .canceled: (false, false)
        }
    }
}

/// What happens to a subscription: the vendor's requests, the provider's answers (by webhook or
/// at once), and the business clock's timers. Raw values read in the 409's sentence ("A
/// subscription that is canceled cannot be paused.").
enum SubscriptionEvent: String, CaseIterable, Sendable {
    // The provider.
    case invoicePaid = "paid"
    case paymentFailed = "charged after a failed payment"
    // Timers.
    case trialEnding = "reminded of its trial's end"
    case periodEnded = "renewed"
    case periodEndedCanceling = "ended at its period's end"
    case retriesExhausted = "suspended"
    case incompleteDeadlinePassed = "expired"
    // The vendor (or an admin).
    case scheduleCancel = "set to cancel at its period's end"
    case unscheduleCancel = "kept from canceling"
    case cancelNow = "canceled"
    case pause = "paused"
    case resume = "resumed"
    case upgrade = "upgraded"
    case downgrade = "downgraded"
    case paymentMethodChanged = "given a new payment method"
    case comp = "given a free period"
}

/// What a transition obliges its handler to do, in the same transaction (events through the
/// outbox, timers as durable rows).
enum SubscriptionEffect: Equatable, Sendable {
    /// `entitlement.changed` with the next version for the vendor.
    case emitEntitlement
    /// The period moves on: next period's dates, next renewal timer.
    case startNextPeriod
    /// Paid after the period already ended (suspended past the renewal): a full period from now.
    case restartLapsedPeriod
    /// An invoice for the coming period (or the trial's end), finalised and charged.
    case invoiceAndCharge
    /// The open invoice charged again now (a new payment method).
    case retryOpenInvoice
    /// The next dunning retry at the schedule's next step.
    case scheduleRetry
    /// Pending dunning retries, the incomplete deadline and the auto-resume timer dropped.
    case clearTimers
    case voidOpenInvoices
    /// A notification event for messaging to mail.
    case notify(Notification)
    case setCancelAtPeriodEnd
    case clearCancelAtPeriodEnd
    /// The automatic resume, at most three months on.
    case scheduleAutoResume
    /// A proration invoice now (credit for the old plan's unused time, debit for the new one's).
    case invoiceProration
    /// The new plan from the next period (`pendingPlan`).
    case setPendingPlan
    /// A free period granted by an admin (recorded with the reason).
    case grantFreePeriod

    enum Notification: String, Sendable {
        case trialEnding = "trial_ending"
        case paymentFailed = "payment_failed"
        case suspended
        case reactivated
        case canceled
    }
}

/// The subscription's transition table: pure, no I/O, no clock. Refused pairs are a 409
/// `invalid-transition`; a timer that fires into a refused pair is stale and is dropped.
enum SubscriptionStateMachine {
    static func transition(from state: SubscriptionStatus, on event: SubscriptionEvent) throws -> (SubscriptionStatus, [SubscriptionEffect]) {
        switch (state, event) {
        // Money arrives.
        case (.trialing, .invoicePaid), (.incomplete, .invoicePaid):
            (.active, [.clearTimers, .emitEntitlement])
        case (.active, .invoicePaid):
            (.active, [])
        case (.pastDue, .invoicePaid):
            (.active, [.clearTimers, .restartLapsedPeriod, .emitEntitlement])
        case (.suspended, .invoicePaid):
            (.active, [.clearTimers, .restartLapsedPeriod, .emitEntitlement, .notify(.reactivated)])

        // Money does not arrive.
        case (.incomplete, .paymentFailed):
            (.incomplete, [])
        case (.trialing, .paymentFailed), (.active, .paymentFailed):
            (.pastDue, [.scheduleRetry, .emitEntitlement, .notify(.paymentFailed)])
        case (.pastDue, .paymentFailed):
            (.pastDue, [.scheduleRetry, .notify(.paymentFailed)])
        case (.suspended, .paymentFailed):
            (.suspended, [])
        case (.pastDue, .retriesExhausted):
            (.suspended, [.emitEntitlement, .notify(.suspended)])
        case (.incomplete, .incompleteDeadlinePassed):
            (.incompleteExpired, [.voidOpenInvoices, .clearTimers])

        // The clock.
        case (.trialing, .trialEnding):
            (.trialing, [.notify(.trialEnding)])
        case (.trialing, .periodEnded), (.active, .periodEnded):
            (state, [.startNextPeriod, .invoiceAndCharge])
        case (.trialing, .periodEndedCanceling), (.active, .periodEndedCanceling), (.pastDue, .periodEndedCanceling):
            (.canceled, [.clearTimers, .voidOpenInvoices, .emitEntitlement, .notify(.canceled)])

        // The vendor.
        case (.trialing, .scheduleCancel), (.active, .scheduleCancel), (.pastDue, .scheduleCancel):
            (state, [.setCancelAtPeriodEnd])
        case (.trialing, .unscheduleCancel), (.active, .unscheduleCancel), (.pastDue, .unscheduleCancel):
            (state, [.clearCancelAtPeriodEnd])
        case (.trialing, .cancelNow), (.incomplete, .cancelNow), (.active, .cancelNow), (.pastDue, .cancelNow),
             (.suspended, .cancelNow), (.paused, .cancelNow):
            (.canceled, [.clearTimers, .voidOpenInvoices, .emitEntitlement, .notify(.canceled)])
        case (.active, .pause):
            (.paused, [.scheduleAutoResume, .emitEntitlement])
        case (.paused, .resume):
            (.active, [.clearTimers, .startNextPeriod, .invoiceAndCharge, .emitEntitlement])
        case (.trialing, .upgrade), (.active, .upgrade):
            (state, [.invoiceProration, .emitEntitlement])
        case (.trialing, .downgrade), (.active, .downgrade):
            (state, [.setPendingPlan])
        case (.incomplete, .paymentMethodChanged), (.pastDue, .paymentMethodChanged), (.suspended, .paymentMethodChanged):
            (state, [.retryOpenInvoice])
        case (.trialing, .paymentMethodChanged), (.active, .paymentMethodChanged), (.paused, .paymentMethodChanged):
            (state, [])
        case (.active, .comp), (.pastDue, .comp), (.suspended, .comp):
            (.active, [.clearTimers, .voidOpenInvoices, .grantFreePeriod, .emitEntitlement])

        default:
            throw Problem.invalidTransition(event.rawValue, from: state.rawValue.replacingOccurrences(of: "_", with: " "), resource: "subscription")
        }
    }
}
