-- The sandbox payment provider's own state (dev and tests). Billing's code never reads these
-- tables: only `SandboxProvider` does, as a real provider keeps its data to itself. Each create
-- remembers its idempotency key, so a retried request gets the first answer.
CREATE TABLE sandbox_customers (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    vendor_id uuid NOT NULL,
    description text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_payment_methods (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    customer_id text NOT NULL REFERENCES sandbox_customers (id),
    test_name text NOT NULL,
    brand text NOT NULL,
    last4 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_payment_intents (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    customer_id text NOT NULL,
    payment_method_id text,
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    fee bigint NOT NULL DEFAULT 0,
    amount_refunded bigint NOT NULL DEFAULT 0,
    status text NOT NULL,
    failure_code text,
    failure_message text,
    description text NOT NULL,
    metadata jsonb NOT NULL,
    transfer_group text,
    client_secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_refunds (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    payment_intent_id text NOT NULL REFERENCES sandbox_payment_intents (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    status text NOT NULL,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_transfers (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    destination text NOT NULL,
    transfer_group text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Events as the sandbox sends them: the signed body is built when delivered.
CREATE TABLE sandbox_events (
    id text PRIMARY KEY,
    type text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    deliveries int NOT NULL DEFAULT 0
);
