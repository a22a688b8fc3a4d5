-- What the marketplace keeps of each order a vendor on the plan sells, in basis points
-- (1 bps = 0.01 %). Orders price their commission from it (issue 13).
ALTER TABLE plans ADD COLUMN commission_bps int NOT NULL DEFAULT 1000
    CHECK (commission_bps BETWEEN 0 AND 10000);

-- Larger plans pay more up front and keep more of each sale.
UPDATE plans SET commission_bps = CASE code
    WHEN 'hobby-monthly' THEN 1200
    WHEN 'breeder-monthly' THEN 800
    WHEN 'kennel-monthly' THEN 500
    WHEN 'breeder-yearly' THEN 800
    ELSE commission_bps END;
