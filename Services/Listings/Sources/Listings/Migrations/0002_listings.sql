-- Listings, their moderation, stock reservations, and the projections visibility depends on.

-- Categories grow review and facets, and a second level (the search's `category` includes it).
ALTER TABLE categories ADD COLUMN requires_review boolean NOT NULL DEFAULT false;
ALTER TABLE categories ADD COLUMN facet_attributes text[] NOT NULL DEFAULT '{}';

UPDATE categories SET facet_attributes = '{breed,sex,color,pedigree,vaccinated}', requires_review = true WHERE slug = 'dogs';
UPDATE categories SET facet_attributes = '{breed,sex,coat,pedigree}', requires_review = true WHERE slug = 'cats';
UPDATE categories SET facet_attributes = '{species,sex,ringed}' WHERE slug = 'birds';
UPDATE categories SET facet_attributes = '{species,sex}' WHERE slug = 'small-animals';
UPDATE categories SET facet_attributes = '{condition,brand,suitableFor}' WHERE slug = 'pet-supplies';

INSERT INTO categories (id, slug, name, parent_id, attribute_schema, position, facet_attributes) VALUES
('0192f1a0-0000-7000-8000-000000000011', 'pet-food', 'Pet food', '0192f1a0-0000-7000-8000-000000000005', '{
  "type": "object", "additionalProperties": false,
  "required": ["condition"],
  "properties": {
    "condition": {"enum": ["new"]},
    "brand": {"type": "string", "maxLength": 80},
    "suitableFor": {"type": "array", "items": {"enum": ["dogs", "cats", "birds", "small-animals"]}, "uniqueItems": true},
    "weightKg": {"type": "number", "minimum": 0, "maximum": 100},
    "bestBefore": {"type": "string", "format": "date"}
  }}', 6, '{brand,suitableFor}'),
('0192f1a0-0000-7000-8000-000000000012', 'cages-and-carriers', 'Cages and carriers', '0192f1a0-0000-7000-8000-000000000005', '{
  "type": "object", "additionalProperties": false,
  "required": ["condition"],
  "properties": {
    "condition": {"enum": ["new", "used"]},
    "brand": {"type": "string", "maxLength": 80},
    "suitableFor": {"type": "array", "items": {"enum": ["dogs", "cats", "birds", "small-animals"]}, "uniqueItems": true},
    "widthCm": {"type": "integer", "minimum": 1, "maximum": 500}
  }}', 7, '{condition,suitableFor}');

-- What the vendor's subscription allows, from billing's entitlement.changed (newer version wins).
CREATE TABLE entitlements (
    vendor_id uuid PRIMARY KEY,
    may_publish boolean NOT NULL,
    may_list boolean NOT NULL,
    listing_quota int NOT NULL,
    commission_bps int NOT NULL,
    subscription_status text NOT NULL,
    reason text NOT NULL,
    effective_at timestamptz NOT NULL,
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Vendors as buyers see them on a listing: the business name (identity's registration) and the
-- rating that orders' reviews will feed.
CREATE TABLE vendors (
    id uuid PRIMARY KEY,
    business_name text,
    rating_average numeric(3, 2),
    rating_count int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);

CREATE TABLE listings (
    id uuid PRIMARY KEY,
    vendor_id uuid NOT NULL,
    category_id uuid NOT NULL REFERENCES categories (id),
    status text NOT NULL CHECK (status IN ('draft', 'pending_review', 'published', 'closed', 'sold', 'rejected', 'removed')),
    -- Why a published listing is not shown: vendor_suspended, subscription_inactive, over_quota.
    hidden_reason text,
    title text NOT NULL,
    description text NOT NULL,
    attributes jsonb NOT NULL,
    price_amount bigint NOT NULL CHECK (price_amount > 0),
    currency char(3) NOT NULL,
    -- Units the vendor offers; available = quantity minus held and committed reservations.
    quantity int NOT NULL CHECK (quantity >= 0),
    quantity_available int NOT NULL CHECK (quantity_available >= 0 AND quantity_available <= quantity),
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    city text NOT NULL,
    region text,
    country char(2) NOT NULL,
    media jsonb NOT NULL DEFAULT '[]',
    rejection_reason text,
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    submitted_at timestamptz,
    published_at timestamptz,
    first_published_at timestamptz
);
-- The vendor's own list (every status), newest first, and its status filter.
CREATE INDEX listings_vendor_idx ON listings (vendor_id, created_at DESC, id DESC);
CREATE INDEX listings_vendor_status_idx ON listings (vendor_id, status, created_at DESC, id DESC);
-- The review queue, oldest first.
CREATE INDEX listings_review_queue_idx ON listings (submitted_at, id) WHERE status = 'pending_review';
-- The search read model loads what is live, and re-reads what changed.
CREATE INDEX listings_live_idx ON listings (published_at, id) WHERE status = 'published' AND hidden_reason IS NULL;

-- Every moderation decision: who, when, why.
CREATE TABLE moderation_decisions (
    id uuid PRIMARY KEY,
    listing_id uuid NOT NULL REFERENCES listings (id) ON DELETE CASCADE,
    moderator_id uuid NOT NULL,
    decision text NOT NULL CHECK (decision IN ('approved', 'rejected', 'removed')),
    reason text,
    decided_at timestamptz NOT NULL
);
CREATE INDEX moderation_decisions_listing_idx ON moderation_decisions (listing_id, decided_at DESC);

-- Stock held for an order: one row per order, so a redelivered order.placed reserves nothing more.
CREATE TABLE stock_reservations (
    order_id uuid PRIMARY KEY,
    -- No foreign key: a closed listing may be deleted, and its orders' reservations stay as facts.
    listing_id uuid NOT NULL,
    buyer_id uuid NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    status text NOT NULL CHECK (status IN ('held', 'committed', 'released', 'rejected')),
    reason text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX stock_reservations_listing_idx ON stock_reservations (listing_id) WHERE status IN ('held', 'committed');
