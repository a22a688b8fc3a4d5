-- A user's data export and erasure find what is theirs by index, not by scanning: what they
-- wrote, what they reported, the mails to them, the orders they were party to.
CREATE INDEX messages_by_author ON messages (author_id, created_at DESC);
CREATE INDEX reports_by_reporter ON reports (reporter_id);
CREATE INDEX mails_by_user ON mails (user_id, created_at DESC);
CREATE INDEX order_facts_by_buyer ON order_facts (buyer_id);
CREATE INDEX order_facts_by_vendor ON order_facts (vendor_id);
