-- Renewal invoices are drafted by the renewal and finalised in sets by one job (numbered with a
-- single counter update per set): the finalising job finds drafts oldest first, and a
-- subscription's unsettled invoices (draft or open) are found when it is canceled or paid.
CREATE INDEX invoices_drafts ON invoices (created_at, id) WHERE status = 'draft';
DROP INDEX invoices_open_by_subscription;
CREATE INDEX invoices_unsettled_by_subscription ON invoices (subscription_id) WHERE status IN ('draft', 'open');

-- A draft whose subscription ends before its set is finalised is voided without ever taking a
-- number (so no number is lost either); every other non-draft invoice has one.
ALTER TABLE invoices DROP CONSTRAINT invoices_check1;
ALTER TABLE invoices ADD CONSTRAINT invoices_numbered_unless_draft CHECK (
    CASE WHEN status = 'draft' THEN number IS NULL
         ELSE number IS NOT NULL OR (status = 'void' AND finalized_at IS NULL) END);

-- A ledger entry's lines are written by one statement, so the balance is checked once per
-- statement over the lines it wrote (a transition table), instead of once per line at commit:
-- every statement must leave each entry it touches balanced. Stricter than before (an entry can
-- no longer be balanced across two statements) and a fifth of the work.
DROP TRIGGER ledger_lines_balance ON ledger_lines;
DROP FUNCTION ledger_entry_balances();

CREATE FUNCTION ledger_statement_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced uuid;
BEGIN
    SELECT entry_id INTO unbalanced FROM written GROUP BY entry_id HAVING sum(debit) <> sum(credit) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % does not balance', unbalanced USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_lines_balance AFTER INSERT ON ledger_lines
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ledger_statement_balances();
