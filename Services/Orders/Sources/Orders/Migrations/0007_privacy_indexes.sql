-- A user's data export and erasure find what is theirs by index: their notes in timelines, their
-- disputes, their evidence, their reviews and the reviews about them.
CREATE INDEX order_history_notes_by_actor ON order_history (actor_id) WHERE note IS NOT NULL;
CREATE INDEX disputes_by_buyer ON disputes (buyer_id, opened_at DESC);
CREATE INDEX disputes_by_vendor ON disputes (vendor_id, opened_at DESC);
CREATE INDEX dispute_evidence_by_author ON dispute_evidence (author_id);
CREATE INDEX reviews_by_author ON reviews (author_id, created_at DESC);
CREATE INDEX reviews_by_subject ON reviews (subject_id) WHERE reply IS NOT NULL;
