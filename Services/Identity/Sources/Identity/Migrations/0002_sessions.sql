-- A session is one refresh-token family: one sign-in on one device, from login to logout,
-- revocation, or its absolute expiry. Refresh tokens now belong to a session row.
CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text
);
-- "My sessions": the caller's live sessions, most recently used first.
CREATE INDEX sessions_user_live_idx ON sessions (user_id, last_used_at DESC) WHERE revoked_at IS NULL;

-- Families issued before this migration become sessions (absolute expiry counted from their start).
INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at, revoked_reason)
SELECT family_id, (array_agg(user_id))[1], min(created_at), max(coalesce(used_at, created_at)),
       min(created_at) + interval '90 days',
       CASE WHEN bool_and(revoked_at IS NOT NULL) THEN max(revoked_at) END,
       CASE WHEN bool_and(revoked_at IS NOT NULL) THEN 'revoked' END
FROM refresh_tokens GROUP BY family_id;

ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_session_fk FOREIGN KEY (family_id) REFERENCES sessions (id) ON DELETE CASCADE;
