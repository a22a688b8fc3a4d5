-- The buyers' payments for orders, one per order (orders states the amount in order.placed):
-- the provider's intent the buyer confirms, and where the money is (OrderPaymentStateMachine).
CREATE TABLE order_payments (
    order_id uuid PRIMARY KEY,
    buyer_id uuid NOT NULL,
    vendor_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    commission bigint NOT NULL CHECK (commission >= 0 AND commission <= amount),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL CHECK (status IN ('awaiting_payment', 'held', 'frozen', 'released', 'refunded', 'settled', 'canceled')),
    provider text NOT NULL,
    intent_id text UNIQUE,
    client_secret text,
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
