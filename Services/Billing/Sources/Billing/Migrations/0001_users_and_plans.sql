-- Users projection, fed by identity.users.v1.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    display_name text NOT NULL,
    roles text[] NOT NULL,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Vendor plans. Money is integer minor units with an ISO 4217 currency.
CREATE TABLE plans (
    id uuid PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    description text NOT NULL,
    price_amount bigint NOT NULL CHECK (price_amount >= 0),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    billing_interval text NOT NULL CHECK (billing_interval IN ('month', 'year')),
    trial_days int NOT NULL CHECK (trial_days >= 0),
    listing_quota int NOT NULL CHECK (listing_quota > 0),
    active boolean NOT NULL DEFAULT true,
    position int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plans_active_idx ON plans (position) WHERE active;

INSERT INTO plans (id, code, name, description, price_amount, currency, billing_interval, trial_days, listing_quota, position) VALUES
('0192f1a0-0000-7000-8000-0000000000a1', 'hobby-monthly', 'Hobby breeder', 'Up to 5 live listings; for a first litter.', 900, 'EUR', 'month', 14, 5, 1),
('0192f1a0-0000-7000-8000-0000000000a2', 'breeder-monthly', 'Breeder', 'Up to 25 live listings and priority support.', 2900, 'EUR', 'month', 14, 25, 2),
('0192f1a0-0000-7000-8000-0000000000a3', 'kennel-monthly', 'Kennel', 'Up to 150 live listings for established kennels and shops.', 7900, 'EUR', 'month', 14, 150, 3),
('0192f1a0-0000-7000-8000-0000000000a4', 'breeder-yearly', 'Breeder (yearly)', 'The Breeder plan billed yearly: two months free.', 29000, 'EUR', 'year', 14, 25, 4);
