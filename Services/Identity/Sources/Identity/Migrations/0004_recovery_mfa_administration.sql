-- A vendor's business profile, given at registration.
CREATE TABLE vendor_profiles (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    business_name text NOT NULL,
    licence_number text,
    city text NOT NULL,
    region text,
    country text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Single-use tokens sent by email (address verification, password reset), stored as SHA-256.
-- `email` is the address the token was sent to: verifying proves that address, not a later one.
CREATE TABLE email_tokens (
    token_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify-email', 'password-reset')),
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose) WHERE used_at IS NULL;

-- A session remembers how it was authenticated: staff roles are granted only to MFA sessions.
ALTER TABLE sessions ADD COLUMN amr text[] NOT NULL DEFAULT ARRAY['pwd'];

-- TOTP (RFC 6238): the shared secret sealed with AES-GCM; `last_step` refuses a replayed code.
CREATE TABLE totp_factors (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    last_step bigint
);

-- Single-use recovery codes, stored as SHA-256.
CREATE TABLE recovery_codes (
    code_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at timestamptz
);
CREATE INDEX recovery_codes_user_idx ON recovery_codes (user_id) WHERE used_at IS NULL;

-- The second login step: the password was right, the code is still owed.
CREATE TABLE mfa_challenges (
    token_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    failures int NOT NULL DEFAULT 0,
    used_at timestamptz
);
CREATE INDEX mfa_challenges_expiry_idx ON mfa_challenges (expires_at);

-- Who did what to whom, when and why. Append-only: the trigger refuses updates and deletes,
-- except that erasure may blank the free-text reason of entries about the erased user.
CREATE TABLE audit_log (
    id uuid PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_id uuid,
    action text NOT NULL,
    target_id uuid,
    reason text,
    details jsonb NOT NULL DEFAULT '{}',
    request_id text
);
-- Read newest first, whole or by target, actor or action.
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_id, at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, at DESC, id DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('identity.erasing', true) = 'on'
       AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.action = OLD.action
       AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id AND NEW.target_id IS NOT DISTINCT FROM OLD.target_id
       AND NEW.reason IS NULL THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Administration lists users by role, status and email prefix, newest first.
CREATE INDEX users_created_idx ON users (created_at DESC, id DESC);
CREATE INDEX users_roles_idx ON users USING gin (roles);
CREATE INDEX users_status_idx ON users (status, created_at DESC, id DESC);
CREATE INDEX users_email_prefix_idx ON users (email_normalized text_pattern_ops);
