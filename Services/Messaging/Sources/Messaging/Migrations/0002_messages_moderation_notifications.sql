-- What messaging knows of other services, from their events.

-- Listings' titles and vendors (listings.listings.v1): what a conversation is about.
CREATE TABLE listing_facts (
    listing_id uuid PRIMARY KEY,
    vendor_id uuid NOT NULL,
    title text NOT NULL,
    published boolean NOT NULL,
    version int NOT NULL
);

-- Orders' parties and status (orders.orders.v1): whom to tell, and what a conversation shows.
CREATE TABLE order_facts (
    order_id uuid PRIMARY KEY,
    listing_id uuid NOT NULL,
    buyer_id uuid NOT NULL,
    vendor_id uuid,
    status text NOT NULL,
    total_amount bigint,
    currency char(3),
    paid_at timestamptz,
    updated_at timestamptz NOT NULL
);

-- A buyer and a vendor between whom an order was paid: contact details are no longer masked.
CREATE TABLE paid_pairs (
    buyer_id uuid NOT NULL,
    vendor_id uuid NOT NULL,
    paid_at timestamptz NOT NULL,
    PRIMARY KEY (buyer_id, vendor_id)
);

-- Where each user's mail goes (identity.notifications.v1, user.email_changed); never on the
-- users topic every service reads.
CREATE TABLE recipients (
    user_id uuid PRIMARY KEY,
    email text NOT NULL,
    email_verified boolean NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Conversations: what they are about, activity, and each side's read mark and unread count.
ALTER TABLE conversations
    ADD COLUMN subject_title text,
    ADD COLUMN last_activity_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN buyer_read_at timestamptz,
    ADD COLUMN vendor_read_at timestamptz,
    ADD COLUMN buyer_unread int NOT NULL DEFAULT 0,
    ADD COLUMN vendor_unread int NOT NULL DEFAULT 0,
    ADD COLUMN last_message_id uuid;
UPDATE conversations SET last_activity_at = coalesce(last_message_at, created_at);
-- One conversation per buyer and listing (when not about an order), and per buyer and order.
CREATE UNIQUE INDEX conversations_one_per_listing ON conversations (buyer_id, listing_id) WHERE order_id IS NULL;
CREATE UNIQUE INDEX conversations_one_per_order ON conversations (buyer_id, order_id) WHERE order_id IS NOT NULL;
-- The list: latest activity first, per side.
CREATE INDEX conversations_buyer_activity_idx ON conversations (buyer_id, last_activity_at DESC, id DESC);
CREATE INDEX conversations_vendor_activity_idx ON conversations (vendor_id, last_activity_at DESC, id DESC);
DROP INDEX conversations_buyer_created_idx;
DROP INDEX conversations_vendor_created_idx;

-- Messages: the original body always; `masked_body` when it held contact details (shown to the
-- recipient until the two have a paid order). Deleted by the author or removed by a moderator,
-- a message stays, with its body, for moderation and disputes.
CREATE TABLE messages (
    id uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    author_id uuid NOT NULL,
    body text NOT NULL,
    masked_body text,
    deleted_at timestamptz,
    removed_at timestamptz,
    removed_by uuid,
    created_at timestamptz NOT NULL
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at DESC, id DESC);

-- Who blocked whom.
CREATE TABLE blocks (
    blocker_id uuid NOT NULL,
    blocked_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_list_idx ON blocks (blocker_id, created_at DESC, blocked_id DESC);

-- Reports: the moderation queue, oldest first.
CREATE TABLE reports (
    id uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    message_id uuid REFERENCES messages (id),
    reporter_id uuid NOT NULL,
    reason text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'resolved')),
    action text CHECK (action IN ('dismiss', 'remove_message')),
    note text,
    resolved_by uuid,
    resolved_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX reports_queue_idx ON reports (status, created_at, id);
CREATE INDEX reports_open_by_conversation_idx ON reports (conversation_id) WHERE status = 'open';
CREATE INDEX reports_by_conversation_idx ON reports (conversation_id, created_at);
-- A repeated report (a double tap) finds the open one instead of queueing a second.
CREATE UNIQUE INDEX reports_one_open_per_reporter ON reports (reporter_id, conversation_id, coalesce(message_id, '00000000-0000-0000-0000-000000000000'))
    WHERE status = 'open';

-- Every staff read of a conversation and every resolution: who, what, when, why. Append-only.
CREATE TABLE staff_reads (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id uuid NOT NULL,
    subject text NOT NULL,
    subject_id uuid,
    request_id text,
    at timestamptz NOT NULL,
    reason text,
    entry_id uuid NOT NULL DEFAULT gen_random_uuid()
);
CREATE INDEX staff_reads_by_actor ON staff_reads (actor_id, id);
CREATE INDEX staff_reads_newest ON staff_reads (at DESC, entry_id DESC);
CREATE FUNCTION staff_reads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'staff_reads is append-only' USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER staff_reads_append_only BEFORE UPDATE OR DELETE ON staff_reads
    FOR EACH ROW EXECUTE FUNCTION staff_reads_append_only();

-- In-app notifications, unread first; one per user and cause (`source_key`: the event and kind).
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    kind text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    link text,
    source_key text NOT NULL,
    read_at timestamptz,
    created_at timestamptz NOT NULL,
    UNIQUE (user_id, source_key)
);
CREATE INDEX notifications_list_idx ON notifications (user_id, (read_at IS NULL) DESC, created_at DESC, id DESC);

-- Mail turned off, per user and kind (absent: on).
CREATE TABLE notification_preferences (
    user_id uuid NOT NULL,
    kind text NOT NULL,
    email boolean NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- The mail queue: rendered in the transaction of the event that caused it (one per cause),
-- sent by the `messaging.send-mail` job, retried with backoff, given up with the reason kept.
CREATE TABLE mails (
    id uuid PRIMARY KEY,
    dedup_key text NOT NULL UNIQUE,
    user_id uuid,
    kind text NOT NULL,
    to_address text NOT NULL,
    to_name text NOT NULL,
    subject text NOT NULL,
    text_body text NOT NULL,
    html_body text NOT NULL,
    unsubscribe_url text,
    status text NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL,
    sent_at timestamptz
);
CREATE INDEX mails_unsent_idx ON mails (created_at) WHERE status = 'queued';

-- When a conversation last mailed each participant about new messages (at most one per 10 minutes).
CREATE TABLE message_mail_marks (
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    user_id uuid NOT NULL,
    last_mailed_at timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- The signing key of unsubscribe links: made here, once, and shared by every replica (two
-- random UUIDs: 244 random bits).
CREATE TABLE link_keys (
    id int PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
);
INSERT INTO link_keys (id, key) VALUES (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- What each user's event streams carry, kept a day for `Last-Event-ID` to resume from.
CREATE TABLE stream_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL,
    type text NOT NULL,
    data text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stream_events_user_idx ON stream_events (user_id, id);
CREATE INDEX stream_events_age_idx ON stream_events (created_at);
