-- A table in a publication that publishes updates, with a unique key but no primary key and
-- so no replica identity: PostgreSQL refuses every UPDATE on it.
CREATE TABLE items (code text NOT NULL UNIQUE, qty int NOT NULL);
INSERT INTO items SELECT 'item-' || g, g % 50 FROM generate_series(1, 20000) g;
CREATE PUBLICATION items_pub FOR TABLE items;
ANALYZE items;
