-- Chargebacks: the provider's disputes of order payments (charge.dispute.created/closed), the
-- statuses they put a payment in, and the order facts that wait while one is open.
ALTER TABLE order_payments DROP CONSTRAINT order_payments_status_check;
ALTER TABLE order_payments ADD CONSTRAINT order_payments_status_check CHECK (status IN (
    'awaiting_payment', 'held', 'frozen', 'released', 'refunded', 'settled', 'canceled',
    'contested', 'contested_after_release', 'charged_back'));
-- An order fact (received or canceled) that arrived while a chargeback froze the money, with the
-- split orders stated for a receipt.
ALTER TABLE order_payments
    ADD COLUMN deferred_event text,
    ADD COLUMN deferred_vendor bigint,
    ADD COLUMN deferred_commission bigint;

-- One row per provider dispute of an order's payment: what it froze (at most what had not been
-- refunded; `commission_part` of it came back from the commission when it was already released).
CREATE TABLE chargebacks (
    dispute_id text PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES order_payments (order_id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    frozen bigint NOT NULL CHECK (frozen >= 0),
    commission_part bigint NOT NULL CHECK (commission_part >= 0),
    -- `ignored`: the payment was in no state to freeze (refunded, say): nothing was posted.
    status text NOT NULL CHECK (status IN ('open', 'won', 'lost', 'ignored')),
    reason text,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz
);
CREATE INDEX chargebacks_by_order ON chargebacks (order_id);

-- The sandbox's own disputes (a payment confirmed with `pm_card_createDispute`).
CREATE TABLE sandbox_disputes (
    id text PRIMARY KEY,
    payment_intent_id text NOT NULL REFERENCES sandbox_payment_intents (id),
    amount bigint NOT NULL,
    currency char(3) NOT NULL,
    status text NOT NULL,
    reason text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
