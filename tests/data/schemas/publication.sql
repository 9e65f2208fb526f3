-- A table in a publication (logical replication of every change).
CREATE TABLE invoices (id bigint PRIMARY KEY, amount_cents bigint NOT NULL);
INSERT INTO invoices SELECT g, 100 * g + g % 100 FROM generate_series(1, 20000) g;
CREATE PUBLICATION invoices_pub FOR TABLE invoices;
ANALYZE invoices;
