-- Escalated disputes are mailed to every active admin: found through this index, not a scan of users.
CREATE INDEX users_active_admins ON users (id) WHERE roles @> ARRAY['admin']::text[] AND status = 'active';
