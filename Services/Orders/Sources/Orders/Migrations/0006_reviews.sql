-- Reviews after receipt: the buyer reviews the vendor and the vendor the buyer, double blind (a
-- review stays `pending`, seen by its author only, until both are written or the 7-day window
-- closes; then both are published at once).
CREATE TABLE reviews (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id),
    author_id uuid NOT NULL,
    -- Who is reviewed: the vendor (a buyer's review) or the buyer (a vendor's).
    subject_id uuid NOT NULL,
    author_role text NOT NULL CHECK (author_role IN ('buyer', 'vendor')),
    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'published', 'removed')),
    reply text,
    replied_at timestamptz,
    removed_reason text,
    removed_by uuid,
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    published_at timestamptz,
    updated_at timestamptz NOT NULL,
    UNIQUE (order_id, author_role)
);
-- A vendor's public reviews, newest first (buyers' reviews of the vendor, published).
CREATE INDEX reviews_of_vendor ON reviews (subject_id, published_at DESC, id DESC) WHERE author_role = 'buyer' AND status = 'published';

-- Each vendor's published rating, kept as a sum and a count (exact), versioned for listings.
CREATE TABLE vendor_ratings (
    vendor_id uuid PRIMARY KEY,
    rating_sum bigint NOT NULL DEFAULT 0,
    rating_count int NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);

-- Staff actions are recorded with why (a review's removal).
ALTER TABLE staff_reads ADD COLUMN reason text;
