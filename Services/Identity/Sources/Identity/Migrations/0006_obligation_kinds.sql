-- Obligations now come from the services' events: open disputes and unpaid invoices block erasure too.
ALTER TABLE user_obligations DROP CONSTRAINT user_obligations_kind_check;
ALTER TABLE user_obligations ADD CONSTRAINT user_obligations_kind_check CHECK (kind IN ('order', 'dispute', 'subscription', 'invoice'));
