-- A key with huge gaps (1, 10^9, 2*10^9, ... 2*10^13) and both ends of bigint.
CREATE TABLE sparse (id bigint PRIMARY KEY, v int NOT NULL);
INSERT INTO sparse VALUES (-9223372036854775808, -1), (1, 0), (9223372036854775807, -2);
INSERT INTO sparse SELECT g::bigint * 1000000000, g FROM generate_series(1, 20000) g;
ANALYZE sparse;
