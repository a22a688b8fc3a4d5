-- Disputes: a buyer's dispute of a delivered order, its evidence from both parties, and the
-- decision. At most one live dispute per order; the desk's queue reads live ones oldest first.
CREATE TABLE disputes (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    buyer_id uuid NOT NULL,
    vendor_id uuid NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'escalated', 'withdrawn', 'resolved')),
    reason text NOT NULL CHECK (reason IN ('not_as_described', 'damaged', 'not_received', 'health', 'other')),
    description text NOT NULL,
    currency char(3) NOT NULL,
    outcome text CHECK (outcome IN ('release', 'refund')),
    refund_amount bigint CHECK (refund_amount >= 0),
    resolution_note text,
    resolved_by uuid,
    -- The buyer's bank's chargeback of the payment, joined to this dispute (billing's events).
    chargeback_id text,
    chargeback_amount bigint,
    chargeback_reason text,
    chargeback_status text CHECK (chargeback_status IN ('open', 'won', 'lost')),
    version int NOT NULL DEFAULT 1,
    opened_at timestamptz NOT NULL,
    escalated_at timestamptz,
    closed_at timestamptz,
    updated_at timestamptz NOT NULL,
    CONSTRAINT disputes_resolved_fully CHECK (status <> 'resolved' OR (outcome IS NOT NULL AND refund_amount IS NOT NULL))
);
CREATE UNIQUE INDEX disputes_one_live_per_order ON disputes (order_id) WHERE status IN ('open', 'escalated');
CREATE INDEX disputes_by_order ON disputes (order_id, opened_at DESC);
CREATE INDEX disputes_queue ON disputes (status, opened_at, id);

CREATE TABLE dispute_evidence (
    id uuid PRIMARY KEY,
    dispute_id uuid NOT NULL REFERENCES disputes (id),
    author_id uuid NOT NULL,
    -- buyer, vendor, moderator or admin: what the author was to the dispute.
    author_role text NOT NULL,
    body text NOT NULL,
    attachments text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);
CREATE INDEX dispute_evidence_by_dispute ON dispute_evidence (dispute_id, created_at, id);
