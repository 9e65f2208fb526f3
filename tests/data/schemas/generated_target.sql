-- A plan that tries to backfill a STORED generated column, which only PostgreSQL may write.
CREATE TABLE line_items (id bigint PRIMARY KEY, qty int NOT NULL, unit_cents bigint NOT NULL,
                         total_cents bigint GENERATED ALWAYS AS (qty * unit_cents) STORED);
INSERT INTO line_items (id, qty, unit_cents) SELECT g, 1 + g % 7, 10 * g FROM generate_series(1, 20000) g;
ANALYZE line_items;
