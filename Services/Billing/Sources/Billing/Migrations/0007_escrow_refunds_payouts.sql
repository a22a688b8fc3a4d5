-- Marketplace money: whose money a ledger line moves, the buyers' refunds, the vendors' payout
-- accounts and payouts, and the sandbox's side of confirming, canceling and paying out.

-- The party a line belongs to (the vendor, for escrow, disputed escrow and vendor payable):
-- a vendor's balance is a sum over its lines, never a counter.
ALTER TABLE ledger_lines ADD COLUMN party_id uuid;
CREATE INDEX ledger_lines_by_party ON ledger_lines (party_id, account) INCLUDE (debit, credit) WHERE party_id IS NOT NULL;

ALTER TABLE order_payments
    ADD COLUMN intent_status text,
    ADD COLUMN fee bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    -- What left (or is leaving) escrow back to the buyer; at most the amount.
    ADD COLUMN refunded bigint NOT NULL DEFAULT 0,
    ADD COLUMN paid_at timestamptz,
    ADD COLUMN released_at timestamptz,
    -- The payout that took the vendor's share out (null until one has).
    ADD COLUMN payout_id uuid,
    ADD CONSTRAINT order_payments_refunded_within CHECK (refunded >= 0 AND refunded <= amount);
CREATE INDEX order_payments_by_vendor ON order_payments (vendor_id, created_at DESC);
CREATE INDEX order_payments_by_payout ON order_payments (payout_id) WHERE payout_id IS NOT NULL;
CREATE INDEX order_payments_awaiting_payout ON order_payments (vendor_id) WHERE released_at IS NOT NULL AND payout_id IS NULL;

-- A provider event about an intent whose order billing has not recorded yet (its order.placed is
-- still on the way): kept here and re-read once the order is recorded.
CREATE TABLE early_intent_events (
    intent_id text PRIMARY KEY,
    order_id uuid NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX early_intent_events_by_order ON early_intent_events (order_id);

-- Money going back to a buyer: one row per refund billing asks the provider for; the provider
-- call is a job keyed by the row.
CREATE TABLE order_refunds (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES order_payments (order_id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    reason text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'succeeded')),
    provider_refund_id text UNIQUE,
    requested_by uuid,
    created_at timestamptz NOT NULL,
    refunded_at timestamptz
);
CREATE INDEX order_refunds_by_order ON order_refunds (order_id);

-- Where a vendor is paid: one account per vendor at the provider.
CREATE TABLE payout_accounts (
    vendor_id uuid PRIMARY KEY,
    provider text NOT NULL,
    account_id text NOT NULL UNIQUE,
    status text NOT NULL CHECK (status IN ('pending', 'active')),
    onboarding_url text,
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Money sent to a vendor's payout account: the vendor's available balance in one currency when
-- the daily run made it, and the released orders it covers (order_payments.payout_id).
CREATE TABLE payouts (
    id uuid PRIMARY KEY,
    vendor_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'paid')),
    account_id text NOT NULL,
    transfer_id text,
    created_at timestamptz NOT NULL,
    paid_at timestamptz
);
CREATE INDEX payouts_by_vendor ON payouts (vendor_id, created_at DESC, id DESC);

-- The sandbox's own: its connected accounts (a vendor's payout account, active at once).
CREATE TABLE sandbox_accounts (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    vendor_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
