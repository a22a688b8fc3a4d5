-- What orders knows of each listing, projected from listings.listings.v1 (a newer version
-- replaces an older one; an older one arriving late changes nothing). Enough to refuse an order
-- at once (not published, the buyer's own listing, not enough stock) and to show the listing on
-- it. The price an order is charged is the one listings states when it reserves the stock
-- (stock.reserved), never this copy's.
CREATE TABLE listing_snapshots (
    id uuid PRIMARY KEY,
    vendor_id uuid NOT NULL,
    title text NOT NULL,
    status text NOT NULL,
    -- Buyers can find and order it now (listings' word: published and not hidden).
    orderable boolean NOT NULL,
    price_amount bigint NOT NULL CHECK (price_amount >= 0),
    currency char(3) NOT NULL,
    quantity_available int NOT NULL CHECK (quantity_available >= 0),
    version int NOT NULL,
    changed_at timestamptz NOT NULL
);
