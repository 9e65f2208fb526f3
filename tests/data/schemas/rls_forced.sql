-- Forced row-level security on a table owned by tide's own (non-superuser) role: the owner
-- is subject to the policy, and without `app.tenant` set the policy hides every row.
DO $$ BEGIN CREATE ROLE tide_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO tide_app', current_database()); END $$;
CREATE TABLE accounts (id bigint PRIMARY KEY, tenant text NOT NULL, old_name text);
INSERT INTO accounts SELECT g, 'tenant-' || (g % 10), 'name ' || g FROM generate_series(1, 20000) g;
CREATE TABLE accounts_expected AS SELECT id, old_name AS name FROM accounts;
ALTER TABLE accounts OWNER TO tide_app;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON accounts USING (tenant = current_setting('app.tenant', true));
ANALYZE accounts;
