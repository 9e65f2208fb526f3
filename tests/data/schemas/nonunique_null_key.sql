-- A `key` that is neither unique nor NOT NULL: k repeats, and is NULL for one row in seven.
CREATE TABLE events (k int, payload text NOT NULL, copied text);
INSERT INTO events SELECT CASE WHEN g % 7 = 0 THEN NULL ELSE g % 1000 END, 'p' || g FROM generate_series(1, 20000) g;
CREATE INDEX events_k_idx ON events (k);
ANALYZE events;
