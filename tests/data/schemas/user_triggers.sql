-- The user's own triggers: BEFORE UPDATE bumps a row version, AFTER UPDATE writes an audit row.
CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, unit_cents bigint NOT NULL,
                     version int NOT NULL DEFAULT 1, updated_at timestamptz);
CREATE TABLE order_log (order_id bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX order_log_order_id ON order_log (order_id);
INSERT INTO orders (id, qty, unit_cents) SELECT g, 1 + g % 9, 100 + g FROM generate_series(1, 20000) g;
CREATE FUNCTION orders_touch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.version := OLD.version + 1; NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();
CREATE FUNCTION orders_log() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO order_log (order_id) VALUES (NEW.id); RETURN NULL; END $$;
CREATE TRIGGER orders_log AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION orders_log();
ANALYZE orders;
