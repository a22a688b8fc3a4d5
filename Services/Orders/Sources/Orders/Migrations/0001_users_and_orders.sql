-- Users projection, fed by identity.users.v1.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    display_name text NOT NULL,
    roles text[] NOT NULL,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE orders (
    id uuid PRIMARY KEY,
    buyer_id uuid NOT NULL,
    vendor_id uuid NOT NULL,
    status text NOT NULL CHECK (status IN ('pending_payment', 'paid', 'shipped', 'delivered', 'received',
                                            'completed', 'canceled', 'disputed', 'refunded')),
    total_amount bigint NOT NULL CHECK (total_amount >= 0),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- "My orders" is read from both sides, newest first, with keyset pagination.
CREATE INDEX orders_buyer_created_idx ON orders (buyer_id, created_at DESC, id DESC);
CREATE INDEX orders_vendor_created_idx ON orders (vendor_id, created_at DESC, id DESC);
