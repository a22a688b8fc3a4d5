import Platform

/// Where a buyer's payment for an order is, from billing's side: money the marketplace holds for
/// strangers, so every step is a ledger movement. One payment per order (one payment intent;
/// the buyer may retry it with another card while it waits).
enum OrderPaymentStatus: String, CaseIterable, Sendable, Codable {
    /// The intent exists; the buyer has not paid yet (or the last try failed).
    case awaitingPayment = "awaiting_payment"
    /// Paid and held in escrow until the order is received.
    case held
    /// Held, and frozen by the buyer's dispute until a moderator decides.
    case frozen
    /// Left escrow: the vendor's share payable, the commission earned. Final.
    case released
    /// Given back to the buyer in full. Final.
    case refunded
    /// A dispute's split: part back to the buyer, the rest released. Final.
    case settled
    /// The order ended before anything was paid; the intent is canceled. Final.
    case canceled
    /// Held, and frozen by the buyer's chargeback at the provider until the bank decides; the
    /// order's facts meanwhile wait (a receipt is applied if the chargeback is won).
    case contested
    /// Released, and taken back from the vendor's payable (and the commission) by a chargeback
    /// until the bank decides.
    case contestedAfterRelease = "contested_after_release"
    /// The chargeback was lost: the buyer's bank took the money back. Final.
    case chargedBack = "charged_back"

    var isFinal: Bool { [.released, .refunded, .settled, .canceled, .chargedBack].contains(self) }
    var phrase: String { rawValue.replacingOccurrences(of: "_", with: " ") }
}

/// What happens to an order's payment: the provider's word on the intent, the order's facts
/// (`order.canceled`, `order.received`, disputes) as orders states them, and an admin's refunds.
enum OrderPaymentEvent: String, CaseIterable, Sendable {
    case paymentSucceeded = "paid"
    case paymentFailed = "failed"
    case orderCanceled = "canceled with its order"
    case orderReceived = "released to the vendor"
    case disputeOpened = "frozen by a dispute"
    case disputeWithdrawn = "unfrozen"
    case resolvedByRelease = "released by a moderator"
    /// A moderator's refund of the whole payment.
    case resolvedByFullRefund = "refunded by a moderator"
    /// A moderator's refund of a part, the rest released.
    case resolvedBySplit = "split by a moderator"
    /// An admin's refund of part of what remains (`POST /v1/admin/refunds`).
    case refundPart = "partly refunded by an admin"
    /// An admin's refund of all that remains.
    case refundRest = "refunded by an admin"
    /// The provider's `charge.dispute.created`: the buyer's bank disputes the payment.
    case chargebackOpened = "charged back"
    /// `charge.dispute.closed`, won: the money comes back.
    case chargebackWon = "cleared of its chargeback"
    /// `charge.dispute.closed`, lost: the money went to the buyer's bank.
    case chargebackLost = "lost to a chargeback"
}

/// What a transition obliges billing to do in the same transaction: ledger movements (each a
/// balanced entry posted once per payment and movement), provider calls (as jobs, with
/// idempotency keys) and events.
enum OrderPaymentEffect: Equatable, Sendable {
    /// A ledger movement of the order's money (`Ledger` accounts; see billing's README).
    case post(Movement)
    /// What remains of the payment back to the buyer through the provider (a job).
    case refundInFull
    /// A part (a moderator's split, an admin's refund) back to the buyer (a job).
    case refundPart
    /// The unpaid intent canceled at the provider (a job), so the buyer cannot pay a dead order.
    case cancelIntent
    case emit(Fact)
    /// An order fact that arrived while a chargeback froze the money: kept, and applied if the
    /// chargeback is won (`replayDeferred`).
    case deferFact
    /// A chargeback on a payment a buyer's dispute froze: the dispute's freeze is kept aside and
    /// applied again if the chargeback is won (the order is still disputed).
    case deferDispute
    case replayDeferred

    enum Movement: String, Sendable, CaseIterable {
        /// Money in: the provider holds the payment (less its fee); the order's escrow owes it.
        case captured
        /// Escrow to the vendor's payable balance and the marketplace's commission.
        case released
        /// Escrow (what the refund takes of it) owed back to the buyer.
        case refunded
        /// Part of escrow owed back to the buyer, the rest released.
        case settled
        /// Escrow moved to disputed escrow (the vendor's `inDispute`), and back.
        case frozen, unfrozen
        /// After release: the refund taken back from the vendor's payable and the commission.
        case clawedBack = "clawed_back"
        /// A chargeback opened: escrow frozen in disputed escrow, the provider's withholding noted.
        case chargebackFrozen = "chargeback_frozen"
        /// A chargeback opened after release: taken back from the vendor's payable and the
        /// commission into disputed escrow (the payable may go negative: carried to later payouts).
        case chargebackRecalled = "chargeback_recalled"
        /// Won: disputed escrow back to escrow, the withheld money back at the provider.
        case chargebackReturned = "chargeback_returned"
        /// Won after release: back to the vendor's payable and the commission.
        case chargebackRestored = "chargeback_restored"
        /// Lost: the disputed money and the withholding are gone to the buyer's bank.
        case chargebackLost = "chargeback_lost"
    }

    /// The payment events of the event catalogue (`payment.<fact>`). Refunds are announced when
    /// the provider has made them (the refund job), not when they are decided.
    enum Fact: String, Sendable, CaseIterable {
        case succeeded
    }
}

/// The order payment's transition table: pure, no I/O, no clock. A refused pair from the
/// provider or from orders is stale (a redelivered or late fact) and changes nothing.
enum OrderPaymentStateMachine {
    static func transition(from state: OrderPaymentStatus, on event: OrderPaymentEvent) throws -> (OrderPaymentStatus, [OrderPaymentEffect]) {
        switch (state, event) {
        case (.awaitingPayment, .paymentSucceeded):
            (.held, [.post(.captured), .emit(.succeeded)])
        case (.awaitingPayment, .paymentFailed):
            (.awaitingPayment, [])
        case (.awaitingPayment, .orderCanceled):
            (.canceled, [.cancelIntent])
        // A payment that lands after its order was canceled is taken in and handed back at once.
        case (.canceled, .paymentSucceeded):
            (.refunded, [.post(.captured), .post(.refunded), .refundInFull])

        case (.held, .orderCanceled), (.held, .refundRest):
            (.refunded, [.post(.refunded), .refundInFull])
        case (.held, .refundPart):
            (.held, [.post(.refunded), .refundPart])
        case (.held, .orderReceived):
            (.released, [.post(.released)])
        case (.held, .disputeOpened):
            (.frozen, [.post(.frozen)])
        case (.frozen, .disputeWithdrawn):
            (.held, [.post(.unfrozen)])
        case (.frozen, .resolvedByRelease):
            (.released, [.post(.unfrozen), .post(.released)])
        case (.frozen, .resolvedByFullRefund):
            (.refunded, [.post(.unfrozen), .post(.refunded), .refundInFull])
        case (.frozen, .resolvedBySplit):
            (.settled, [.post(.unfrozen), .post(.settled), .refundPart])
        // After release an admin's refund comes out of the vendor's payable and the commission.
        case (.released, .refundPart), (.released, .refundRest):
            (.released, [.post(.clawedBack), .refundPart])

        // Chargebacks: the bank's dispute freezes what the marketplace holds or paid the vendor.
        case (.held, .chargebackOpened):
            (.contested, [.post(.chargebackFrozen)])
        case (.contested, .orderReceived), (.contested, .orderCanceled):
            (.contested, [.deferFact])
        case (.contested, .chargebackWon):
            (.held, [.post(.chargebackReturned), .replayDeferred])
        case (.contested, .chargebackLost):
            (.chargedBack, [.post(.chargebackLost)])
        case (.frozen, .chargebackOpened):
            (.contested, [.post(.unfrozen), .post(.chargebackFrozen), .deferDispute])
        case (.released, .chargebackOpened):
            (.contestedAfterRelease, [.post(.chargebackRecalled)])
        case (.contestedAfterRelease, .chargebackWon):
            (.released, [.post(.chargebackRestored)])
        case (.contestedAfterRelease, .chargebackLost):
            (.chargedBack, [.post(.chargebackLost)])

        default:
            throw Problem.invalidTransition(event.rawValue, from: state.phrase, resource: "order payment")
        }
    }
}
