-- Each vendor's commission rate, projected from billing's entitlement.changed
-- (billing.entitlements.v1; a newer version replaces an older one): the rate an order is
-- placed at, fixed on the order when it is placed.
CREATE TABLE vendor_commissions (
    vendor_id uuid PRIMARY KEY,
    commission_bps int NOT NULL CHECK (commission_bps BETWEEN 0 AND 10000),
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
