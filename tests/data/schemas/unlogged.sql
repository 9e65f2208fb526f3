CREATE UNLOGGED TABLE sessions (id bigint PRIMARY KEY, user_id bigint NOT NULL, started_at timestamptz NOT NULL);
INSERT INTO sessions SELECT g, g % 300, timestamptz '2024-03-01 00:00:00+00' + g * interval '7 minutes' FROM generate_series(1, 20000) g;
ANALYZE sessions;
