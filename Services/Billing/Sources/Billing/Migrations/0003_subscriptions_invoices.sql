-- A vendor's customer at the payment provider (one per vendor and provider).
CREATE TABLE customers (
    vendor_id uuid NOT NULL,
    provider text NOT NULL,
    customer_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor_id, provider)
);

-- Vendor subscriptions (Stripe's statuses). Times are business time.
CREATE TABLE subscriptions (
    id uuid PRIMARY KEY,
    vendor_id uuid NOT NULL,
    plan_id uuid NOT NULL REFERENCES plans (id),
    pending_plan_id uuid REFERENCES plans (id),
    status text NOT NULL CHECK (status IN ('trialing', 'incomplete', 'incomplete_expired', 'active', 'past_due',
                                           'suspended', 'paused', 'canceled')),
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    trial_end timestamptz,
    current_period_start timestamptz NOT NULL,
    current_period_end timestamptz NOT NULL CHECK (current_period_end > current_period_start),
    paused_until timestamptz,
    canceled_at timestamptz,
    ended_at timestamptz,
    provider text NOT NULL,
    customer_id text NOT NULL,
    payment_method_id text NOT NULL,
    payment_method_brand text NOT NULL,
    payment_method_last4 text NOT NULL,
    latest_invoice_id uuid,
    -- When the open renewal invoice first failed: the dunning schedule counts from here.
    past_due_since timestamptz,
    version int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- At most one subscription per vendor that is not over (409 subscription-exists).
CREATE UNIQUE INDEX subscriptions_live_per_vendor ON subscriptions (vendor_id)
    WHERE status NOT IN ('canceled', 'incomplete_expired');
-- GET /v1/vendor/subscription (the newest) and the admin list per vendor.
CREATE INDEX subscriptions_by_vendor ON subscriptions (vendor_id, created_at DESC, id DESC);
-- The admin lists: all, or by status; newest first.
CREATE INDEX subscriptions_newest ON subscriptions (created_at DESC, id DESC);
CREATE INDEX subscriptions_by_status ON subscriptions (status, created_at DESC, id DESC);

-- Every status change, for GET /v1/subscriptions/{id}.
CREATE TABLE subscription_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    at timestamptz NOT NULL,
    status text NOT NULL,
    event text NOT NULL,
    actor_id uuid,
    note text
);
CREATE INDEX subscription_history_by_subscription ON subscription_history (subscription_id, id);

-- Invoice numbers without gaps, per year: the counter row is locked by the transaction that
-- finalises an invoice, so a number exists only if that invoice committed (a sequence can skip).
CREATE TABLE invoice_number_counters (
    year int PRIMARY KEY,
    last_number int NOT NULL CHECK (last_number > 0)
);

CREATE TABLE invoices (
    id uuid PRIMARY KEY,
    number text UNIQUE,
    vendor_id uuid NOT NULL,
    subscription_id uuid NOT NULL REFERENCES subscriptions (id),
    -- Why it was made: the first period, a renewal, an upgrade's proration, a resume.
    reason text NOT NULL CHECK (reason IN ('subscription_create', 'subscription_cycle', 'subscription_update', 'subscription_resume')),
    status text NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency char(3) NOT NULL,
    subtotal bigint NOT NULL,
    tax bigint NOT NULL DEFAULT 0,
    total bigint NOT NULL CHECK (total = subtotal + tax),
    amount_paid bigint NOT NULL DEFAULT 0,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    attempt_count int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at timestamptz NOT NULL,
    finalized_at timestamptz,
    paid_at timestamptz,
    voided_at timestamptz,
    CHECK ((status = 'draft') = (number IS NULL))
);
CREATE INDEX invoices_by_vendor ON invoices (vendor_id, created_at DESC, id DESC);
CREATE INDEX invoices_newest ON invoices (created_at DESC, id DESC);
CREATE INDEX invoices_open_by_subscription ON invoices (subscription_id) WHERE status = 'open';

CREATE TABLE invoice_lines (
    invoice_id uuid NOT NULL REFERENCES invoices (id),
    position int NOT NULL,
    kind text NOT NULL CHECK (kind IN ('plan', 'proration_credit', 'proration_debit')),
    description text NOT NULL,
    plan_id uuid NOT NULL REFERENCES plans (id),
    -- Negative for a credit.
    amount bigint NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    PRIMARY KEY (invoice_id, position)
);

-- A finalised invoice is a document: its number, money, lines and period never change again;
-- only its status (and when it was paid or voided) moves on.
CREATE FUNCTION invoices_immutable_once_finalised() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'draft' AND (NEW.number IS DISTINCT FROM OLD.number OR NEW.currency <> OLD.currency
        OR NEW.subtotal <> OLD.subtotal OR NEW.tax <> OLD.tax OR NEW.total <> OLD.total
        OR NEW.period_start <> OLD.period_start OR NEW.period_end <> OLD.period_end
        OR NEW.vendor_id <> OLD.vendor_id OR NEW.subscription_id <> OLD.subscription_id OR NEW.status = 'draft') THEN
        RAISE EXCEPTION 'invoice % is finalised and cannot change', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER invoices_immutable BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable_once_finalised();

CREATE FUNCTION invoice_lines_only_on_drafts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT status FROM invoices WHERE id = COALESCE(NEW.invoice_id, OLD.invoice_id)) <> 'draft' THEN
        RAISE EXCEPTION 'invoice % is finalised: its lines cannot change', COALESCE(NEW.invoice_id, OLD.invoice_id)
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;
CREATE TRIGGER invoice_lines_immutable BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_only_on_drafts();

-- One row per payment attempt (a provider payment intent); the provider's id is unique, so a
-- charge's answer and its webhooks record it once.
CREATE TABLE payments (
    intent_id text PRIMARY KEY,
    provider text NOT NULL,
    invoice_id uuid NOT NULL REFERENCES invoices (id),
    attempt int NOT NULL,
    amount bigint NOT NULL,
    fee bigint NOT NULL DEFAULT 0,
    currency char(3) NOT NULL,
    status text NOT NULL,
    failure_code text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    UNIQUE (invoice_id, attempt)
);

-- What billing told listings last, per vendor: the version of entitlement.changed.
CREATE TABLE vendor_entitlements (
    vendor_id uuid PRIMARY KEY,
    version bigint NOT NULL,
    may_publish boolean NOT NULL,
    may_list boolean NOT NULL,
    listing_quota int NOT NULL,
    subscription_status text NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Provider webhooks, stored by the provider's event id: a redelivery finds its row and does nothing.
CREATE TABLE webhook_events (
    provider text NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    object_type text NOT NULL,
    object_id text NOT NULL,
    created timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX webhook_events_unapplied ON webhook_events (provider, object_id) WHERE applied_at IS NULL;

-- Double-entry ledger in minor units: an entry's lines balance per currency (checked at
-- commit), and nothing is ever updated or deleted. (kind, reference) makes each posting once.
CREATE TABLE ledger_entries (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    reference text NOT NULL,
    currency char(3) NOT NULL,
    memo text NOT NULL,
    occurred_at timestamptz NOT NULL,
    UNIQUE (kind, reference)
);
CREATE TABLE ledger_lines (
    entry_id uuid NOT NULL REFERENCES ledger_entries (id),
    position int NOT NULL,
    account text NOT NULL,
    debit bigint NOT NULL CHECK (debit >= 0),
    credit bigint NOT NULL CHECK (credit >= 0),
    CHECK ((debit = 0) <> (credit = 0)),
    PRIMARY KEY (entry_id, position)
);
CREATE INDEX ledger_lines_by_account ON ledger_lines (account);

CREATE FUNCTION ledger_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT sum(debit) - sum(credit) FROM ledger_lines WHERE entry_id = NEW.entry_id) <> 0 THEN
        RAISE EXCEPTION 'ledger entry % does not balance', NEW.entry_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_lines_balance AFTER INSERT ON ledger_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balances();

CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION append_only();
CREATE TRIGGER ledger_lines_append_only BEFORE UPDATE OR DELETE ON ledger_lines
    FOR EACH ROW EXECUTE FUNCTION append_only();

-- Admins' reads of vendors' billing records: who read what, when (append-only).
CREATE TABLE staff_reads (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id uuid NOT NULL,
    subject text NOT NULL,
    subject_id uuid,
    request_id text,
    at timestamptz NOT NULL
);
CREATE INDEX staff_reads_by_actor ON staff_reads (actor_id, id);
CREATE TRIGGER staff_reads_append_only BEFORE UPDATE OR DELETE ON staff_reads
    FOR EACH ROW EXECUTE FUNCTION append_only();
