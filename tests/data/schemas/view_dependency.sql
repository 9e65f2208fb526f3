-- A view that depends on the column the plan drops.
CREATE TABLE customers (id bigint PRIMARY KEY, fullname text);
INSERT INTO customers SELECT g, 'Customer ' || g FROM generate_series(1, 20000) g;
CREATE VIEW customer_names AS SELECT id, fullname FROM customers;
CREATE TABLE customers_expected AS SELECT id, fullname AS name FROM customers;
ANALYZE customers;
