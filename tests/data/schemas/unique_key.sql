-- No primary key: a unique, not-null text column is the key.
CREATE TABLE skus (sku text NOT NULL, price_cents bigint NOT NULL, CONSTRAINT skus_sku_key UNIQUE (sku));
INSERT INTO skus SELECT 'SKU-' || lpad((g * 7919 % 20011)::text, 6, '0'), g FROM generate_series(1, 20000) g;
ANALYZE skus;
