-- A text primary key in a linguistic collation, where the order is not the bytes' order
-- ('_x' < '-z' < 'a' < 'ä' < 'B' ...): en-US-x-icu where ICU is there, else und-x-icu, else
-- C.UTF-8.
DO $$
DECLARE
  coll text;
BEGIN
  SELECT collname INTO coll FROM pg_collation
   WHERE collname IN ('en-US-x-icu', 'und-x-icu', 'C.UTF-8', 'C.utf8')
   ORDER BY array_position(ARRAY['en-US-x-icu', 'und-x-icu', 'C.UTF-8', 'C.utf8'], collname::text)
   LIMIT 1;
  EXECUTE format('CREATE TABLE words (word text COLLATE %I PRIMARY KEY, n int NOT NULL)', coll);
END $$;
INSERT INTO words
  SELECT (ARRAY['a', 'B', 'ä', 'Z', 'é', '_', '-', ' ', 'Æ', 'ß'])[1 + g % 10] ||
         (g * 7919 % 20011) || (ARRAY['x', 'Y', 'ö'])[1 + g % 3], g
  FROM generate_series(1, 20000) g;
ANALYZE words;
