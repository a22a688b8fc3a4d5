-- Marketplace Postgres bootstrap: the `marketplace` database and, per service, a LOGIN role
-- and a schema of the same name that only that role may use; see the README, "Using a real Postgres and a real Kafka".
--
-- Idempotent: safe to run again at any time. Run as a superuser with psql, connected to the
-- maintenance database (the script creates `marketplace` and then connects to it):
--
--   psql -X -v ON_ERROR_STOP=1 -h HOST -p PORT -U postgres -d postgres \
--        -v identity_password=... -v listings_password=... -v billing_password=... \
--        -v orders_password=... -v messaging_password=... \
--        -f deploy/postgres/bootstrap.sql
--
-- A password variable that is not given defaults to the role's name (local development only).
-- Passwords are set only when a role is created: running the script again never changes the
-- password of an existing role. Tables are created by `<service> migrate`, never here.
-- deploy/dev/suite.py runs exactly this file; its SERVICES constant lists the same five services.

\set ON_ERROR_STOP on

SELECT 'CREATE DATABASE marketplace'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'marketplace')\gexec

\if :{?identity_password}
\else
\set identity_password identity
\endif
\if :{?listings_password}
\else
\set listings_password listings
\endif
\if :{?billing_password}
\else
\set billing_password billing
\endif
\if :{?orders_password}
\else
\set orders_password orders
\endif
\if :{?messaging_password}
\else
\set messaging_password messaging
\endif

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', 'identity', :'identity_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'identity')\gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', 'listings', :'listings_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'listings')\gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', 'billing', :'billing_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'billing')\gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', 'orders', :'orders_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'orders')\gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', 'messaging', :'messaging_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'messaging')\gexec

\connect marketplace

-- Nobody gets anything by default: no connecting, no creating in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE marketplace FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS identity AUTHORIZATION identity;
REVOKE ALL ON SCHEMA identity FROM PUBLIC;
ALTER ROLE identity SET search_path = identity;
GRANT CONNECT ON DATABASE marketplace TO identity;

CREATE SCHEMA IF NOT EXISTS listings AUTHORIZATION listings;
REVOKE ALL ON SCHEMA listings FROM PUBLIC;
ALTER ROLE listings SET search_path = listings;
GRANT CONNECT ON DATABASE marketplace TO listings;

CREATE SCHEMA IF NOT EXISTS billing AUTHORIZATION billing;
REVOKE ALL ON SCHEMA billing FROM PUBLIC;
ALTER ROLE billing SET search_path = billing;
GRANT CONNECT ON DATABASE marketplace TO billing;

CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION orders;
REVOKE ALL ON SCHEMA orders FROM PUBLIC;
ALTER ROLE orders SET search_path = orders;
GRANT CONNECT ON DATABASE marketplace TO orders;

CREATE SCHEMA IF NOT EXISTS messaging AUTHORIZATION messaging;
REVOKE ALL ON SCHEMA messaging FROM PUBLIC;
ALTER ROLE messaging SET search_path = messaging;
GRANT CONNECT ON DATABASE marketplace TO messaging;
