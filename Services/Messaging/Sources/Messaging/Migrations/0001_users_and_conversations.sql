-- Users projection, fed by identity.users.v1.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    display_name text NOT NULL,
    roles text[] NOT NULL,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A conversation between one buyer and one vendor, about a listing or an order.
CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    buyer_id uuid NOT NULL,
    vendor_id uuid NOT NULL,
    listing_id uuid,
    order_id uuid,
    last_message_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (buyer_id <> vendor_id)
);
CREATE INDEX conversations_buyer_created_idx ON conversations (buyer_id, created_at DESC, id DESC);
CREATE INDEX conversations_vendor_created_idx ON conversations (vendor_id, created_at DESC, id DESC);
