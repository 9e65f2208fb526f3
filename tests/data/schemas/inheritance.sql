-- Inheritance: two child tables whose ids overlap the parent's (the parent's primary key
-- does not cover its children).
CREATE TABLE vehicles (id bigint PRIMARY KEY, wheels int NOT NULL, label text NOT NULL);
CREATE TABLE trucks (axles int NOT NULL DEFAULT 2) INHERITS (vehicles);
CREATE TABLE bikes () INHERITS (vehicles);
INSERT INTO vehicles SELECT g, 4, 'car ' || g FROM generate_series(1, 10000) g;
INSERT INTO trucks (id, wheels, label) SELECT g, 6, 'truck ' || g FROM generate_series(5001, 12000) g;
INSERT INTO bikes SELECT g, 2, 'bike ' || g FROM generate_series(1, 3000) g;
ANALYZE vehicles; ANALYZE trucks; ANALYZE bikes;
