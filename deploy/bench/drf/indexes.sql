-- What a Django team would add for GET /v1/listings on the listings schema (deploy/bench/drf).
-- Applied by deploy/bench/search/bench_search.py as superuser after the data is loaded:
--   psql -v ON_ERROR_STOP=1 -v schema=listings -f deploy/bench/drf/indexes.sql
-- The expressions must match catalog/expressions.py exactly, or the planner will not use them.
\if :{?schema}
\else
\set schema listings
\endif
SET search_path = :schema, public;
SET maintenance_work_mem = '1GB';

-- Extensions in the listings schema itself: earthdistance's SQL functions resolve earth() and
-- cube through the search_path, which is the listings role's (`listings`).
CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA :schema;
CREATE EXTENSION IF NOT EXISTS cube SCHEMA :schema;
CREATE EXTENSION IF NOT EXISTS earthdistance SCHEMA :schema;

-- English stemming of unaccented words: to_tsvector stays IMMUTABLE (indexable), unlike unaccent().
SELECT NOT EXISTS (SELECT FROM pg_ts_config WHERE cfgname = 'english_unaccent'
                   AND cfgnamespace = :'schema'::regnamespace) AS create_config \gset
\if :create_config
CREATE TEXT SEARCH CONFIGURATION english_unaccent (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION english_unaccent
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, english_stem;
\endif

-- Full text: title (A), attribute string values (B), description (C).
CREATE INDEX IF NOT EXISTS drf_listings_search_idx ON listings USING gin ((
    (setweight(to_tsvector('english_unaccent'::regconfig, COALESCE(title, '')), 'A')
     || setweight(jsonb_to_tsvector('english_unaccent'::regconfig, attributes, '["string"]'::jsonb), 'B'))
     || setweight(to_tsvector('english_unaccent'::regconfig, COALESCE(description, '')), 'C')));
-- attr.<name>=<value> as jsonb containment (@>).
CREATE INDEX IF NOT EXISTS drf_listings_attributes_idx ON listings USING gin (attributes jsonb_path_ops);
-- category filter + newest first; price sorts and ranges; a vendor's listings.
CREATE INDEX IF NOT EXISTS drf_listings_category_idx ON listings (category_id, status, published_at);
CREATE INDEX IF NOT EXISTS drf_listings_price_idx ON listings (price_amount);
CREATE INDEX IF NOT EXISTS drf_listings_vendor_idx ON listings (vendor_id, published_at);
-- near + radiusKm: earth_box(...) @> ll_to_earth(lat, lon).
CREATE INDEX IF NOT EXISTS drf_listings_location_idx ON listings USING gist (ll_to_earth(lat, lon));
-- minRating joins vendors.
CREATE INDEX IF NOT EXISTS drf_vendors_rating_idx ON vendors (rating_average);

ANALYZE listings;
ANALYZE vendors;
