-- The version of orders' `vendor.rating_changed` last applied to a vendor's rating: only a newer one replaces it.
ALTER TABLE vendors ADD COLUMN rating_version bigint NOT NULL DEFAULT 0;
