-- Account erasure: identity anonymises its own data at the request, every privacy participant
-- acknowledges its part, then the erasure is complete (`user.erased`).
CREATE TABLE erasures (
    user_id uuid PRIMARY KEY REFERENCES users (id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    acknowledged text[] NOT NULL DEFAULT '{}',
    completed_at timestamptz
);

-- What keeps a user from being erased (open orders, active subscriptions), projected from the
-- owning services' events.
CREATE TABLE user_obligations (
    kind text NOT NULL CHECK (kind IN ('order', 'subscription')),
    reference uuid NOT NULL,
    user_id uuid NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, reference, user_id)
);
CREATE INDEX user_obligations_user_idx ON user_obligations (user_id);

-- Data exports: identity's part at once, every participant's part as it arrives; kept 7 days.
CREATE TABLE exports (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at timestamptz NOT NULL
);
CREATE INDEX exports_user_idx ON exports (user_id, requested_at DESC);
CREATE INDEX exports_expiry_idx ON exports (expires_at);

CREATE TABLE export_parts (
    export_id uuid NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    service text NOT NULL,
    data jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (export_id, service)
);
