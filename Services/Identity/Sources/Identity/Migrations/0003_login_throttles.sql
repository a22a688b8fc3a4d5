-- Failed-login counters per account (normalised email, whether or not it exists) and per client
-- address, with the time until which further attempts are refused.
CREATE TABLE login_throttles (
    key text PRIMARY KEY,
    failures int NOT NULL DEFAULT 0,
    window_started_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_throttles_updated_idx ON login_throttles (updated_at);
