-- The purchase process: what an order was placed for (listing, units, price and commission fixed
-- when placed), where it ships, its payment as billing reports it, fulfilment, and its timeline.
-- Rows from before this migration have none of it (there were none outside tests); the checks
-- below hold for every row written from now on (NOT VALID: existing rows are not checked).
ALTER TABLE orders
    ADD COLUMN listing_id uuid,
    ADD COLUMN listing_title text,
    ADD COLUMN quantity int,
    ADD COLUMN unit_price_amount bigint,
    ADD COLUMN commission_bps int,
    ADD COLUMN commission_amount bigint,
    ADD COLUMN shipping_address jsonb,
    ADD COLUMN payment_due_at timestamptz,
    -- Billing's payment intent for the order (payment.intent_created); null until it exists.
    ADD COLUMN payment_intent_id text,
    ADD COLUMN payment_client_secret text,
    ADD COLUMN payment_status text,
    ADD COLUMN refunded_amount bigint NOT NULL DEFAULT 0,
    ADD COLUMN carrier text,
    ADD COLUMN tracking_number text,
    ADD COLUMN cancel_reason text,
    ADD COLUMN stock_confirmed boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT orders_placed_fully CHECK (
        listing_id IS NOT NULL AND listing_title IS NOT NULL AND quantity > 0 AND unit_price_amount >= 0
        AND commission_bps BETWEEN 0 AND 10000 AND commission_amount BETWEEN 0 AND total_amount
        AND total_amount = unit_price_amount * quantity AND shipping_address IS NOT NULL AND payment_due_at IS NOT NULL) NOT VALID,
    ADD CONSTRAINT orders_refund_within_total CHECK (refunded_amount BETWEEN 0 AND total_amount);

-- Lists filtered by status ("my orders as vendor that are paid") stay index range scans.
CREATE INDEX orders_buyer_status_created_idx ON orders (buyer_id, status, created_at DESC, id DESC);
CREATE INDEX orders_vendor_status_created_idx ON orders (vendor_id, status, created_at DESC, id DESC);

-- Every change of an order, oldest first: what the order's `history` shows.
CREATE TABLE order_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    at timestamptz NOT NULL,
    status text NOT NULL,
    event text NOT NULL,
    -- The buyer or vendor who asked; null for the clock and the other services.
    actor_id uuid,
    note text
);
CREATE INDEX order_history_by_order ON order_history (order_id, id);


-- Moderators' and admins' reads of orders: who read what, when (append-only).
CREATE TABLE staff_reads (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id uuid NOT NULL,
    subject text NOT NULL,
    subject_id uuid,
    request_id text,
    at timestamptz NOT NULL
);
CREATE INDEX staff_reads_by_actor ON staff_reads (actor_id, id);
CREATE FUNCTION staff_reads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'staff_reads is append-only' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER staff_reads_append_only BEFORE UPDATE OR DELETE ON staff_reads
    FOR EACH ROW EXECUTE FUNCTION staff_reads_append_only();
