-- The new column has a domain type with a CHECK. PostgreSQL adds such a column by rewriting
-- the whole table under ACCESS EXCLUSIVE (it checks the domain against every row), where
-- add_column promises a catalog-only change. relfilenode before the plan is kept to tell.
CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);
CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL);
INSERT INTO payments SELECT g, g / 4.0 FROM generate_series(1, 20000) g;
CREATE TABLE hostile_meta AS SELECT relfilenode FROM pg_class WHERE relname = 'payments';
ANALYZE payments;
