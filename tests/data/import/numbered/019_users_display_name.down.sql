DROP INDEX IF EXISTS core.idx_users_display_name;
ALTER TABLE core.users DROP COLUMN IF EXISTS display_name;
