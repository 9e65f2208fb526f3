-- tide's role may read and update the table but does not own it, so it may not ALTER it.
DO $$ BEGIN CREATE ROLE tide_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE app_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO tide_app', current_database()); END $$;
CREATE TABLE ledger (id bigint PRIMARY KEY, amount bigint NOT NULL);
INSERT INTO ledger SELECT g, g * 3 FROM generate_series(1, 20000) g;
ALTER TABLE ledger OWNER TO app_owner;
GRANT SELECT, UPDATE ON ledger TO tide_app;
CREATE TABLE hostile_meta AS SELECT count(*) AS columns FROM pg_attribute WHERE attrelid = 'ledger'::regclass AND attnum > 0;
ANALYZE ledger;
