-- 019_users_display_name.sql: every user gets a display name (applied with psql -f)
BEGIN;

ALTER TABLE core.users ADD COLUMN display_name varchar(200);

UPDATE core.users
   SET display_name = COALESCE(name, split_part(email, '@', 1))
 WHERE display_name IS NULL;

CREATE INDEX idx_users_display_name ON core.users (display_name);

ALTER TABLE core.users ALTER COLUMN display_name SET NOT NULL;

COMMIT;
